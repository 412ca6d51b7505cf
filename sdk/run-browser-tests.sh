#!/usr/bin/env bash
# Runs the SDK's browser tests (sdk/tests/browser.rs) with wasm-bindgen-test in headless
# Chromium, then in headless Firefox ESR when geckodriver is on PATH (`cargo install geckodriver`).
# Browser flags come from sdk/webdriver.json. Uses the system's browsers and drivers only: nothing
# downloads a browser.
set -euo pipefail
cd "$(dirname "$0")/.."

# The runner must match the wasm-bindgen crate in Cargo.lock exactly.
want=$(awk '/^name = "wasm-bindgen"$/ {getline; gsub(/"/, "", $3); print $3; exit}' Cargo.lock)
if [ "$(wasm-bindgen-test-runner --version 2>/dev/null | awk '{print $2}')" != "$want" ]; then
  cargo install -q wasm-bindgen-cli --version "$want"
fi

run() {
  echo "== SDK browser tests: $1"
  shift
  env "$@" cargo test -p waymark-sdk --target wasm32-unknown-unknown
}

chromedriver=${CHROMEDRIVER:-$(command -v chromedriver || true)}
if [ -z "$chromedriver" ]; then
  echo "chromedriver not found (Debian: apt-get install chromium-driver)" >&2
  exit 1
fi
run Chromium -u GECKODRIVER CHROMEDRIVER="$chromedriver"

if gecko=$(command -v geckodriver); then
  run "Firefox ESR" -u CHROMEDRIVER GECKODRIVER="$gecko"
else
  echo "== SDK browser tests: Firefox skipped (no geckodriver on PATH)"
fi
