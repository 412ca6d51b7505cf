#!/usr/bin/env bash
# Builds the dashboard (dashboard/) into dashboard/dist/, which the collector serves at
# /dashboard/ (and at / when not in demo mode).
#
#   1. `npm ci` from the committed package-lock.json (skipped when node_modules already matches it)
#   2. `vite build` (skipped when dist/ is newer than every source file and the lockfile)
#   3. .gz (and .br when `brotli` is installed) siblings of the text files, which the collector
#      serves to clients that accept them
#
# npm talks only to the registry configured on this machine, the lockfile records no registry
# URLs, and install scripts are not run. Idempotent and fast when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/../dashboard"

for tool in node npm; do
  if ! command -v "$tool" > /dev/null; then
    echo "error: $tool is not installed (Node 20 or newer with npm is needed)" >&2
    exit 1
  fi
done
export npm_config_audit=false npm_config_fund=false npm_config_update_notifier=false
elapsed() { echo "$(( $(date +%s) - $1 )) s"; }

echo "== dashboard: npm ci"
started=$(date +%s)
# npm writes node_modules/.package-lock.json on install; when it is newer than the lockfile and
# vite is there, the install is current.
if [ -x node_modules/.bin/vite ] && [ node_modules/.package-lock.json -nt package-lock.json ] &&
   [ node_modules/.package-lock.json -nt package.json ]; then
  echo "   node_modules is up to date"
else
  npm ci --ignore-scripts --no-audit --no-fund
fi
echo "   install: $(elapsed "$started")"

echo "== dashboard: vite build"
started=$(date +%s)
newest_source=$(find index.html vite.config.js package.json package-lock.json src -type f -newer dist/index.html 2> /dev/null | head -n 1 || true)
if [ -f dist/index.html ] && [ -z "$newest_source" ]; then
  echo "   dist/ is up to date"
else
  ./node_modules/.bin/vite build --logLevel warn
  [ -f dist/index.html ] || { echo "error: dashboard/dist/index.html is missing" >&2; exit 1; }
  find dist -type f \( -name '*.js' -o -name '*.css' -o -name '*.html' -o -name '*.svg' \) -print0 |
    while IFS= read -r -d '' f; do
      gzip -9 -n -k -f "$f"
      if command -v brotli > /dev/null; then brotli -q 11 -f -k "$f"; fi
    done
fi
echo "   build: $(elapsed "$started")"
js=$(find dist/assets -name '*.js' ! -name '*.map' | head -n 1)
echo "== dashboard built: dashboard/dist ($(wc -c < "$js") bytes of JS, $(wc -c < "$js.gz") gzip)"
