#!/usr/bin/env bash
# Installs what building and testing Waymark needs on a fresh Debian 12 machine (as root).
# Idempotent: every step checks first, so re-running it is quick.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
# Node.js and npm build the SDK's JS (terser, wasm-opt from npm's binaryen) and the npm apps.
command -v npm >/dev/null || need+=(nodejs npm)
# clickhouse-server/-client: the ClickHouse store's tests (scripts/clickhouse.sh runs a private
# server); nginx-light: the load balancer in front of several collectors (deploy/nginx.sh).
for p in chromium chromium-driver firefox-esr sqlite3 clickhouse-server clickhouse-client nginx-light; do
  dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: apt-get install ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # The packages' own services (nginx on 0.0.0.0:80, clickhouse-server) must not start: the
  # scripts run private instances on 127.0.0.1. policy-rc.d 101 tells invoke-rc.d "don't start".
  policy=
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    policy=/usr/sbin/policy-rc.d
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy"
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  if [ -n "$policy" ]; then rm -f "$policy"; trap - EXIT; fi
  if [ -d /run/systemd/system ]; then
    for s in nginx clickhouse-server; do
      systemctl disable --now "$s" >/dev/null 2>&1 || true
    done
  fi
fi
# In case a service got started all the same (or by an earlier install): stop the packaged
# nginx through its own pid file, and the packaged clickhouse-server by its /etc config only.
# (Not /etc/init.d/clickhouse-server stop: that kills every clickhouse-server on the machine.)
if [ -s /run/nginx.pid ] && kill -0 "$(cat /run/nginx.pid)" 2>/dev/null; then
  echo "setup: stopping the packaged nginx service"
  nginx -s quit || true
fi
for d in /proc/[0-9]*; do
  cmd=$({ tr '\0' ' ' <"$d/cmdline"; } 2>/dev/null) || continue
  case $cmd in
    /usr/sbin/clickhouse-server*/etc/clickhouse-server/config.xml*)
      echo "setup: stopping the packaged clickhouse-server (pid ${d#/proc/})"
      kill -TERM "${d#/proc/}" 2>/dev/null || true ;;
  esac
done

# chdb (current ClickHouse, in-process) checks that the SQL also runs on a new ClickHouse
# (scripts/chdb-check.py). Its own venv, as PyPI's chdb brings numpy/pandas/pyarrow (~0.9 GB).
chdb_venv=${WAYMARK_CHDB_VENV:-/opt/waymark/chdb-venv}
if ! "$chdb_venv/bin/python" -c 'import chdb' >/dev/null 2>&1; then
  echo "setup: pip install chdb into $chdb_venv"
  rm -rf "$chdb_venv"
  mkdir -p "$(dirname "$chdb_venv")"
  python3 -m venv "$chdb_venv"
  "$chdb_venv/bin/pip" install -q --disable-pip-version-check chdb==4.4.0
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
