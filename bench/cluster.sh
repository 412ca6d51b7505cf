#!/usr/bin/env bash
# Scale-out benchmark (issue 6): ingestion into one ClickHouse by ONE collector, then by THREE
# collectors behind nginx (deploy/nginx-three-collectors.conf, `hash $remote_addr consistent`),
# in the same run with the same load. The load generator (collector/examples/cluster_load.rs)
# binds every connection to its own source address 127.0.0.2… so the hash spreads them; it
# sends the bench/ingest.lua batches (10 events, unique batch id, 50 000 visitors).
# Bounded: two runs of $DURATION seconds. Everything listens on 127.0.0.1 only.
# Usage: bash bench/cluster.sh   (needs clickhouse-server and nginx: scripts/setup.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-20}
CONNS=${CONNS:-48}
CH=${CH_PORT:-18123}
cargo build --release -q -p waymark-collector --bin waymark --example cluster_load
run=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  bash deploy/nginx.sh stop "$run/nginx" >/dev/null 2>&1 || true
  bash scripts/clickhouse.sh stop "$run/ch" >/dev/null 2>&1 || true
  rm -rf "$run"
}
trap cleanup EXIT
bash scripts/clickhouse.sh start "$run/ch" "$CH" >/dev/null
url="clickhouse://127.0.0.1:$CH/bench"
target/release/waymark site add shop --origin https://shop.example --store "$url" \
  --data-dir "$run/d0" >/dev/null
serve() { # port
  mkdir -p "$run/d$1"
  WAYMARK_LOG=warn target/release/waymark serve --listen "127.0.0.1:$1" --data-dir "$run/d$1" \
    --store "$url" --trusted-proxy 127.0.0.1 --rate-limit-per-second 1000000 &
  pids+=($!)
}
count() { curl -s "http://127.0.0.1:$CH/?database=bench" --data-binary 'SELECT count() FROM events'; }
serve 18081
sleep 1
echo "== one collector (direct, no nginx)"
target/release/examples/cluster_load 127.0.0.1:18081 "$DURATION" "$CONNS"
echo "events stored so far: $(count)"
curl -s "http://127.0.0.1:18081/metrics" | awk '
  /^waymark_commit_seconds_sum/ {cs = $2} /^waymark_commit_seconds_count/ {cn = $2}
  /^waymark_commit_batches_sum/ {bs = $2}
  END {printf "its writer: %d commits, mean %.0f ms and %.1f batches per commit\n", cn, 1000 * cs / cn, bs / cn}'
serve 18082
serve 18083
bash deploy/nginx.sh start "$run/nginx" 18088 18081 18082 18083 >/dev/null
sleep 1
echo "== three collectors behind nginx"
target/release/examples/cluster_load 127.0.0.1:18088 "$DURATION" "$CONNS"
# Per collector: events accepted, sessions resumed from the store, and the writer's group
# commits (count, mean time, mean batches per commit) over both runs.
for p in 18081 18082 18083; do
  curl -s "http://127.0.0.1:$p/metrics" | awk -v p="$p" '
    /^waymark_events_total\{outcome="accepted"\}/ {acc = $2}
    /^waymark_sessions_resumed_total/ {res = $2}
    /^waymark_commit_seconds_sum/ {cs = $2}
    /^waymark_commit_seconds_count/ {cn = $2}
    /^waymark_commit_batches_sum/ {bs = $2}
    END {printf "collector :%s accepted %d events, resumed %d sessions, %d commits, mean %.0f ms and %.1f batches per commit\n",
      p, acc, res, cn, cn ? 1000 * cs / cn : 0, cn ? bs / cn : 0}'
done
echo "events stored: $(count)"
curl -s "http://127.0.0.1:$CH/" --data-binary "SELECT table, sum(rows), sum(bytes), count()
  FROM system.parts WHERE database = 'bench' AND active GROUP BY table ORDER BY table
  FORMAT PrettyCompactMonoBlock"
