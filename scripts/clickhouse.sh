#!/usr/bin/env bash
# A throwaway ClickHouse server (Debian 12's clickhouse-server 18.16) for tests and benchmarks.
#
#   scripts/clickhouse.sh start <dir> <http_port> [tcp_port]   # tcp_port defaults to http_port+1
#   scripts/clickhouse.sh stop <dir>
#
# Everything (config, users, data, logs, pid file) lives under <dir>; /etc/clickhouse-server is
# never read. The server listens on 127.0.0.1 only, has no interserver port, and its one user,
# `default`, has no password and is accepted from 127.0.0.1 and ::1 only. `start` returns once
# http://127.0.0.1:<http_port>/ping answers `Ok.` (or fails after 60 s, printing the log tail).
# Re-running `start` on a <dir> whose server is still up only waits for it again; `stop` on a
# stopped or missing <dir> is a no-op.
set -euo pipefail

die() { echo "clickhouse.sh: $*" >&2; exit 1; }
usage() { die "usage: $0 start <dir> <http_port> [tcp_port] | stop <dir>"; }

bin=${CLICKHOUSE_SERVER:-/usr/sbin/clickhouse-server}

running() { # pid file names a live clickhouse-server?
  local pid
  [ -s "$1/clickhouse.pid" ] || return 1
  pid=$(cat "$1/clickhouse.pid")
  kill -0 "$pid" 2>/dev/null || return 1
  grep -q clickhouse "/proc/$pid/cmdline" 2>/dev/null
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

log_tail() { # dir
  tail -n 30 "$1/log/stderr.log" "$1/log/clickhouse-server.err.log" >&2 2>/dev/null || true
}

wait_ping() { # dir port
  local deadline=$((SECONDS + 60))
  while ((SECONDS < deadline)); do
    # Ok. from the port *and* our process alive (so it is not some other server answering).
    if [ "$(curl -s --max-time 1 "http://127.0.0.1:$2/ping" 2>/dev/null)" = "Ok." ] && running "$1"; then
      return 0
    fi
    if ! running "$1"; then
      echo "clickhouse.sh: server exited during start-up; log tail:" >&2
      log_tail "$1"
      return 1
    fi
    sleep 0.1
  done
  echo "clickhouse.sh: no 'Ok.' from http://127.0.0.1:$2/ping after 60 s; log tail:" >&2
  log_tail "$1"
  return 1
}

start() {
  [ $# -ge 2 ] || usage
  local dir http=$2 tcp=${3:-$(($2 + 1))}
  [[ $http =~ ^[0-9]+$ && $tcp =~ ^[0-9]+$ ]] || usage
  [ -x "$bin" ] || die "$bin not found (bash scripts/setup.sh installs clickhouse-server)"
  mkdir -p "$1"
  dir=$(cd "$1" && pwd)
  if running "$dir"; then
    local cur
    cur=$(sed -n 's|.*<http_port>\([0-9]*\)</http_port>.*|\1|p' "$dir/config.xml")
    [ "$cur" = "$http" ] || die "already running in $dir on port $cur, not $http (stop it first)"
    wait_ping "$dir" "$http"
    echo "clickhouse.sh: already running (pid $(cat "$dir/clickhouse.pid")) on 127.0.0.1:$http"
    return 0
  fi
  for p in "$http" "$tcp"; do
    port_busy "$p" && die "127.0.0.1:$p is already in use (another server? stop it first)"
  done
  mkdir -p "$dir"/{data,tmp,user_files,format_schemas,log}
  cat >"$dir/config.xml" <<EOF
<?xml version="1.0"?>
<yandex>
  <logger>
    <level>information</level>
    <log>$dir/log/clickhouse-server.log</log>
    <errorlog>$dir/log/clickhouse-server.err.log</errorlog>
    <size>10M</size>
    <count>2</count>
  </logger>
  <listen_host>127.0.0.1</listen_host>
  <listen_try>0</listen_try>
  <http_port>$http</http_port>
  <tcp_port>$tcp</tcp_port>
  <!-- no interserver_http_port: no replication endpoint is opened -->
  <path>$dir/data/</path>
  <tmp_path>$dir/tmp/</tmp_path>
  <user_files_path>$dir/user_files/</user_files_path>
  <format_schema_path>$dir/format_schemas/</format_schema_path>
  <users_config>$dir/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <timezone>UTC</timezone>
  <mark_cache_size>268435456</mark_cache_size>
  <uncompressed_cache_size>268435456</uncompressed_cache_size>
  <max_concurrent_queries>100</max_concurrent_queries>
  <max_connections>256</max_connections>
</yandex>
EOF
  cat >"$dir/users.xml" <<'EOF'
<?xml version="1.0"?>
<yandex>
  <profiles>
    <default>
      <!-- 0: reads, writes and settings changes (ALTER ... DELETE / mutations need this) -->
      <readonly>0</readonly>
      <max_memory_usage>4000000000</max_memory_usage>
      <load_balancing>random</load_balancing>
    </default>
  </profiles>
  <users>
    <default>
      <password></password>
      <networks>
        <ip>127.0.0.1</ip>
        <ip>::1</ip>
      </networks>
      <profile>default</profile>
      <quota>default</quota>
    </default>
  </users>
  <quotas>
    <default>
      <interval><duration>3600</duration><queries>0</queries><errors>0</errors>
        <result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time></interval>
    </default>
  </quotas>
</yandex>
EOF
  rm -f "$dir/clickhouse.pid"
  # Backgrounded in its own session so the caller's job control and signals leave it alone.
  (cd "$dir" && exec setsid "$bin" --config-file="$dir/config.xml" \
    </dev/null >"$dir/log/stdout.log" 2>"$dir/log/stderr.log") &
  echo $! >"$dir/clickhouse.pid"
  local t0=$SECONDS
  if ! wait_ping "$dir" "$http"; then
    stop "$dir" >/dev/null 2>&1 || true
    exit 1
  fi
  echo "clickhouse.sh: ClickHouse up on http://127.0.0.1:$http/ (tcp $tcp, pid $(cat "$dir/clickhouse.pid"), ~$((SECONDS - t0)) s)"
}

stop() {
  [ $# -ge 1 ] || usage
  local dir=$1 pid i
  [ -d "$dir" ] || return 0
  if ! running "$dir"; then
    rm -f "$dir/clickhouse.pid"
    return 0
  fi
  pid=$(cat "$dir/clickhouse.pid")
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 300; i++)); do # up to 30 s for a clean shutdown
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    echo "clickhouse.sh: pid $pid still up after 30 s; SIGKILL" >&2
    kill -KILL "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
  fi
  rm -f "$dir/clickhouse.pid"
  echo "clickhouse.sh: stopped (pid $pid)"
}

cmd=${1:-}
shift || true
case $cmd in
  start) start "$@" ;;
  stop) stop "$@" ;;
  *) usage ;;
esac
