#!/usr/bin/env bash
# Runs every test on a fresh Debian 12 machine (as root): installs what is missing, then
# formatting and lints, 60 s of fuzzing the batch decoder, the SDK's browser tests, and the
# workspace's unit and integration tests (real HTTP, real SQLite files, the real binary, a real
# ClickHouse 18.16 server), then every distinct SQL statement those tests sent to ClickHouse
# once more on a current ClickHouse (chdb).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

echo "== fmt and clippy"
cargo fmt --all -- --check
cargo clippy -q --workspace --all-targets -- -D warnings
# The shipped SDK bundle: `no_std`, built without default features (see sdk/Cargo.toml).
cargo clippy -q -p waymark-sdk --no-default-features --target wasm32-unknown-unknown -- -D warnings

echo "== build the SDK (sdk/dist: script tag and npm package)"
cargo xtask build-sdk
cargo xtask size
bash scripts/build-dashboard.sh
# The npm tarball in a Vite app (demo-site/vite-app) and a webpack app (sdk/npm-check/webpack).
bash scripts/build-npm-apps.sh

echo "== SDK browser tests (wasm-bindgen-test in Chromium and Firefox ESR)"
mkdir -p target
if ! bash sdk/run-browser-tests.sh > target/sdk-browser-tests.txt 2>&1; then
  tail -n 60 target/sdk-browser-tests.txt
  exit 1
fi
grep -E '^(== |test result)' target/sdk-browser-tests.txt

echo "== fuzz the batch decoder for 60 s"
(cd fuzz && cargo +nightly fuzz run -s none batch_decoder corpus/batch_decoder -- -max_total_time=60 -rss_limit_mb=4096 2>&1 | tail -n 20)

echo "== workspace tests"
# MaxMind's fake test database (from the maxminddb PyPI sdist, hash-pinned) for the GeoIP test.
WAYMARK_TEST_GEOIP="$(bash collector/tests/fetch-geoip-test-db.sh)"
export WAYMARK_TEST_GEOIP
# Browser journeys share the machine's two cores: one browser at a time (the harness locks too).
# The ClickHouse store logs every statement it sends (without row data) to the SQL log, from the
# test threads and from the collectors they start (an absolute path: their working directories
# differ).
sql_log="$PWD/target/clickhouse-sql.log"
rm -f "$sql_log"
WAYMARK_CLICKHOUSE_SQL_LOG="$sql_log" cargo test --workspace --no-fail-fast 2>&1 | tee target/test-output.txt | grep -E '^(test result|running|error|failures|---- )|panicked' || true

echo "== the ClickHouse store's SQL on current ClickHouse (chdb, from scripts/setup.sh's venv)"
# Each distinct statement of the log once, in order, on empty tables its own CREATEs make;
# inserts are checked without rows (scripts/chdb-check.py). Full output: target/chdb-check.txt.
chdb_ok=1
if ! python3 scripts/chdb-check.py --unique "$sql_log" > target/chdb-check.txt 2>&1; then
  chdb_ok=0
  head -c 6000 target/chdb-check.txt
  echo
fi
tail -n 1 target/chdb-check.txt

# The summary: one closing line for the whole run.
passed=$(awk '/^test result:/ {p += $4} END {print p + 0}' target/test-output.txt)
failed=$(awk '/^test result:/ {f += $6} END {print f + 0}' target/test-output.txt)
if grep -qE '^error(\[|:)|test result: FAILED' target/test-output.txt || [ "$failed" != 0 ]; then
  grep -E -A 30 '^failures:' target/test-output.txt | head -n 120 || true
  echo "$passed passed, $failed failed"
  exit 1
fi
if [ "$chdb_ok" != 1 ]; then
  echo "$passed passed, $failed failed; the ClickHouse SQL failed on chdb (target/chdb-check.txt)"
  exit 1
fi
echo "$passed passed, $failed failed"
