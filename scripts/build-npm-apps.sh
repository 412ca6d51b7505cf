#!/usr/bin/env bash
# Builds the apps that use the SDK's npm package exactly as a customer would: from the packed
# tarball, not from a path link.
#
#   1. `npm pack sdk/dist/npm` into target/npm/ (sdk/dist comes from `cargo xtask build-sdk`)
#   2. in each app: `npm ci` from its committed package-lock.json
#   3. the app's bundler: demo-site/vite-app (Vite 7) and sdk/npm-check/webpack (webpack 5)
#   4. checks the outputs: dist/index.html for Vite, and a .wasm file in each output
#
# The Vite app's dist/ is what tests/tests/npm_apps.rs opens through the demo collector at
# /vite-app/dist/. Idempotent: run it again after every SDK change.
#
# When the SDK changed since the lockfiles were written, the tarball no longer matches the
# integrity recorded in them. `npm ci` does not reliably notice (with a warm npm cache it
# silently installs the OLD tarball from the cache), so this script compares the hashes itself
# and then re-installs the tarball with `npm install`, which refreshes the lockfile (commit it).
#
# npm talks only to the registry configured on this machine (nothing here names one), lockfiles
# record no registry URLs, and install scripts are not run, so nothing (no browser, no binary)
# is downloaded from anywhere else.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

APPS=(demo-site/vite-app sdk/npm-check/webpack)

for tool in node npm; do
  if ! command -v "$tool" > /dev/null; then
    echo "error: $tool is not installed (Node 20 or newer with npm is needed)" >&2
    exit 1
  fi
done
if [ ! -f sdk/dist/npm/package.json ] || [ ! -f sdk/dist/npm/waymark_bg.wasm ]; then
  echo "error: the SDK's npm package is not built (sdk/dist/npm is missing)." >&2
  echo "       Run \`cargo xtask build-sdk\` first, then this script again." >&2
  exit 1
fi

# No audit or funding requests, no update check.
export npm_config_audit=false npm_config_fund=false npm_config_update_notifier=false

elapsed() { echo "$(( $(date +%s) - $1 )) s"; }

echo "== npm pack sdk/dist/npm → target/npm/"
mkdir -p target/npm
started=$(date +%s)
pack_json=$(npm pack sdk/dist/npm --pack-destination target/npm --json 2> target/npm/pack.log) || {
  cat target/npm/pack.log >&2
  exit 1
}
tarball_name=$(node -e 'const r = JSON.parse(process.argv[1]); process.stdout.write(r[0].filename)' "$pack_json")
tarball="$root/target/npm/$tarball_name"
[ -f "$tarball" ] || { echo "error: npm pack wrote no $tarball" >&2; exit 1; }
# Drop tarballs of earlier SDK versions so exactly one is left.
find target/npm -maxdepth 1 -name 'waymark-sdk-*.tgz' ! -name "$tarball_name" -delete
integrity=$(node -e '
  const { createHash } = require("node:crypto");
  const data = require("node:fs").readFileSync(process.argv[1]);
  process.stdout.write("sha512-" + createHash("sha512").update(data).digest("base64"));
' "$tarball")
echo "   $tarball_name ($(wc -c < "$tarball") bytes) in $(elapsed "$started")"

# The integrity and the `resolved` spec recorded for waymark-sdk in the lockfile ("-" if none).
locked() {
  node -e '
    let lock = {};
    try { lock = JSON.parse(require("node:fs").readFileSync("package-lock.json", "utf8")); } catch {}
    const e = (lock.packages || {})["node_modules/waymark-sdk"] || {};
    process.stdout.write((e.integrity || "-") + " " + (e.resolved || "-") + "\n");
  '
}

for app in "${APPS[@]}"; do
  echo "== $app"
  cd "$root/$app"
  rel=$(realpath --relative-to=. "$tarball")
  spec="file:$rel"
  started=$(date +%s)
  read -r lock_integrity lock_resolved < <(locked)
  if [ "$lock_integrity" = "$integrity" ] && [ "$lock_resolved" = "$spec" ]; then
    npm ci --ignore-scripts
  else
    echo "note: $app/package-lock.json records another waymark-sdk tarball (the SDK changed);"
    echo "      re-installing $rel and refreshing the lockfile: commit $app/package-lock.json (and package.json if the version changed)"
    npm install --ignore-scripts --omit-lockfile-registry-resolved "waymark-sdk@$spec"
    read -r lock_integrity lock_resolved < <(locked)
    if [ "$lock_integrity" != "$integrity" ]; then
      echo "error: $app/package-lock.json still does not record the new tarball" >&2
      exit 1
    fi
  fi
  # What was installed must be the SDK that was just built, not a cached older tarball.
  if ! cmp -s node_modules/waymark-sdk/waymark_bg.wasm "$root/sdk/dist/npm/waymark_bg.wasm" ||
     ! cmp -s node_modules/waymark-sdk/index.js "$root/sdk/dist/npm/index.js"; then
    echo "error: $app/node_modules/waymark-sdk is not the SDK in sdk/dist/npm" >&2
    exit 1
  fi
  echo "   install: $(elapsed "$started")"

  started=$(date +%s)
  case "$app" in
    demo-site/vite-app)
      ./node_modules/.bin/vite build
      out=dist
      [ -f "$out/index.html" ] || { echo "error: $app/$out/index.html is missing" >&2; exit 1; }
      ;;
    sdk/npm-check/webpack)
      ./node_modules/.bin/webpack --mode production
      out=dist
      [ -f "$out/main.js" ] || { echo "error: $app/$out/main.js is missing" >&2; exit 1; }
      ;;
  esac
  wasm=$(find "$out" -name '*.wasm' -type f | head -n 1)
  if [ -z "$wasm" ]; then
    echo "error: $app/$out has no .wasm file: the SDK's Wasm was not emitted as an asset" >&2
    exit 1
  fi
  if ! cmp -s "$wasm" "$root/sdk/dist/npm/waymark_bg.wasm"; then
    echo "error: $app/$wasm differs from sdk/dist/npm/waymark_bg.wasm" >&2
    exit 1
  fi
  echo "   build: $(elapsed "$started"); output has $wasm"
done
cd "$root"
rm -f target/npm/pack.log
echo "== npm apps built: demo-site/vite-app/dist (served at /vite-app/dist/ by \`waymark serve --demo\`), sdk/npm-check/webpack/dist"
