#!/usr/bin/env bash
# Installs what building and testing Waymark needs on a fresh Debian 12 machine (as root).
# Idempotent: every step checks first, so re-running it is quick.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
# Node.js and npm build the SDK's JS (terser, wasm-opt from npm's binaryen) and the npm apps.
command -v npm >/dev/null || need+=(nodejs npm)
for p in chromium chromium-driver firefox-esr sqlite3; do
  dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: apt-get install ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal

# The wasm-bindgen CLI must match the wasm-bindgen crate in Cargo.lock exactly.
wbg=$(awk '/^name = "wasm-bindgen"$/ {getline; gsub(/"/, "", $3); print $3; exit}' Cargo.lock)
if [ "$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" != "$wbg" ]; then
  echo "setup: cargo install wasm-bindgen-cli $wbg"
  cargo install -q wasm-bindgen-cli --version "$wbg"
fi
command -v cargo-fuzz >/dev/null || cargo install -q cargo-fuzz
# Firefox ESR is driven through geckodriver, from crates.io (it never downloads a browser).
command -v geckodriver >/dev/null || cargo install -q geckodriver
echo "setup: done"
