#!/usr/bin/env bash
# Ingestion benchmark (issue 2, target a): the collector with durable SQLite commits against a
# bare hyper "200 OK" server, measured in the same run with the same wrk load; then the
# collector's latency at half its peak rate. Bounded: three wrk runs of $DURATION each.
# Usage: bash bench/ingest.sh   (needs wrk: apt-get install wrk)
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10s}
CONNS=${CONNS:-64}
cargo build --release -q -p waymark-collector --bin waymark --example bare_hyper
dir=$(mktemp -d)
out=$(mktemp -d)
target/release/waymark site add shop --origin https://shop.example --data-dir "$dir" >/dev/null
WAYMARK_LOG=warn target/release/waymark serve --listen 127.0.0.1:18080 --data-dir "$dir" \
  --trusted-proxy 127.0.0.1 --rate-limit-per-second 1000000 &
collector=$!
target/release/examples/bare_hyper 127.0.0.1:18090 &
bare=$!
trap 'kill $collector $bare 2>/dev/null; rm -rf "$dir"' EXIT
sleep 1
run() { wrk -t2 -c"$CONNS" -d"$DURATION" --latency -s bench/ingest.lua "$1" > "$2"; }
run http://127.0.0.1:18090/ "$out/bare.txt"
run http://127.0.0.1:18080/ "$out/collector.txt"
rps() { awk '/Requests\/sec/ {print $2}' "$1"; }
bare_rps=$(rps "$out/bare.txt")
coll_rps=$(rps "$out/collector.txt")
half=$(awk -v r="$coll_rps" 'BEGIN {printf "%d", r / 2}')
WAYMARK_RATE=$half WAYMARK_CONNS=$CONNS run http://127.0.0.1:18080/ "$out/half.txt"
events=$(sqlite3 "$dir/waymark.sqlite3" 'SELECT count(*) FROM events' 2>/dev/null || echo "?")
echo "== bare hyper";            grep -E 'Requests/sec|Latency  |99%' "$out/bare.txt"
echo "== collector (peak)";      grep -E 'Requests/sec|Latency  |99%|Non-2xx' "$out/collector.txt" || true
echo "== collector at $half req/s (half its peak)"; grep -E 'Requests/sec|Latency  |50%|99%|Non-2xx' "$out/half.txt" || true
awk -v c="$coll_rps" -v b="$bare_rps" 'BEGIN {printf "ratio collector/bare = %.1f %%\n", 100 * c / b}'
echo "events stored: $events"
