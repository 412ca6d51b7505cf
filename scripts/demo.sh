#!/usr/bin/env bash
# The main job on a fresh Debian 12 machine (as root): installs what is missing, builds the SDK
# and the collector, and runs the collector on the embedded store with the demo shop at
# http://127.0.0.1:8080 (data in ./waymark-data). Stop it with Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo xtask build-sdk
bash scripts/build-dashboard.sh
bash scripts/build-npm-apps.sh   # the npm-package variant at /vite-app/dist/
cargo build --release -q -p waymark-collector
cat <<'MSG'

  Waymark is running: open http://127.0.0.1:8080/ and shop.
  - Accept the consent banner (nothing is sent before you do), browse products, add to cart,
    check out, try the Gift finder (a single-page app) and the newsletter box.
  - "Privacy settings" in the footer changes your choice later.
  - The same shop through the npm package in a Vite app: http://127.0.0.1:8080/vite-app/dist/
  - What was stored: sqlite3 waymark-data/waymark.sqlite3 'SELECT * FROM sessions'
  - Metrics: http://127.0.0.1:8080/metrics

MSG
exec target/release/waymark serve --demo --listen 127.0.0.1:8080 --data-dir waymark-data
