#!/usr/bin/env bash
# nginx as a load balancer for three Waymark collectors, run from a private directory.
#
#   deploy/nginx.sh start <rundir> <listen_port> <port1> <port2> <port3>   # daemonised
#   deploy/nginx.sh run   <rundir> <listen_port> <port1> <port2> <port3>   # in the foreground
#   deploy/nginx.sh stop  <rundir>
#
# Renders deploy/nginx-three-collectors.conf into <rundir>/nginx.conf and runs
# `nginx -p <rundir>/ -c <rundir>/nginx.conf`: it listens on 127.0.0.1:<listen_port> only,
# proxies to 127.0.0.1:<portN>, keeps its pid file and error log in <rundir>, writes no access
# log, and never reads or writes /etc/nginx (so it runs beside, or without, the nginx service).
# `start` on a <rundir> whose nginx is up re-renders and reloads it (new ports take effect);
# `stop` on a stopped one is a no-op. Collectors need `--trusted-proxy 127.0.0.1`.
set -euo pipefail

die() { echo "nginx.sh: $*" >&2; exit 1; }
usage() { die "usage: $0 start|run <rundir> <listen_port> <port1> <port2> <port3> | stop <rundir>"; }
template=$(cd "$(dirname "$0")" && pwd)/nginx-three-collectors.conf
nginx=${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}

running() {
  [ -s "$1/nginx.pid" ] && kill -0 "$(cat "$1/nginx.pid")" 2>/dev/null &&
    grep -q nginx "/proc/$(cat "$1/nginx.pid")/cmdline" 2>/dev/null
}

render() { # rundir listen p1 p2 p3
  local p user=
  for p in "${@:2}"; do [[ $p =~ ^[0-9]+$ ]] || usage; done
  [ -x "$nginx" ] || die "nginx not found (bash scripts/setup.sh installs nginx-light)"
  mkdir -p "$1/tmp"
  # As root the master drops its workers to nobody (they write nothing: see the template).
  [ "$(id -u)" = 0 ] && user="user nobody nogroup;"
  sed -e "s|@RUNDIR@|$1|g" -e "s|@LISTEN_PORT@|$2|g" -e "s|@PORT1@|$3|g" \
    -e "s|@PORT2@|$4|g" -e "s|@PORT3@|$5|g" -e "s|@USER@|$user|g" "$template" >"$1/nginx.conf.new"
  if ! "$nginx" -q -t -p "$1/" -c "$1/nginx.conf.new"; then
    rm -f "$1/nginx.conf.new"
    die "the rendered configuration does not pass nginx -t"
  fi
  mv "$1/nginx.conf.new" "$1/nginx.conf"
}

start() { # rundir listen p1 p2 p3
  [ $# -eq 5 ] || usage
  local dir i
  mkdir -p "$1"
  dir=$(cd "$1" && pwd)
  render "$dir" "${@:2}"
  if running "$dir"; then
    kill -HUP "$(cat "$dir/nginx.pid")"
    echo "nginx.sh: reloaded (pid $(cat "$dir/nginx.pid")) on 127.0.0.1:$2"
    return 0
  fi
  (exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null && die "127.0.0.1:$2 is already in use"
  rm -f "$dir/nginx.pid"
  "$nginx" -p "$dir/" -c "$dir/nginx.conf"
  for ((i = 0; i < 100; i++)); do
    if running "$dir" && (exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null; then
      echo "nginx.sh: nginx up on 127.0.0.1:$2 -> 127.0.0.1:{$3,$4,$5} (pid $(cat "$dir/nginx.pid"))"
      return 0
    fi
    sleep 0.05
  done
  tail -n 20 "$dir/error.log" >&2 2>/dev/null || true
  die "nginx did not come up on 127.0.0.1:$2 within 5 s"
}

run() { # rundir listen p1 p2 p3
  [ $# -eq 5 ] || usage
  local dir
  mkdir -p "$1"
  dir=$(cd "$1" && pwd)
  render "$dir" "${@:2}"
  exec "$nginx" -p "$dir/" -c "$dir/nginx.conf" -g "daemon off;"
}

stop() { # rundir
  [ $# -eq 1 ] || usage
  local pid i
  running "$1" || { rm -f "$1/nginx.pid"; return 0; }
  pid=$(cat "$1/nginx.pid")
  kill -QUIT "$pid" # graceful: finish the requests in flight
  for ((i = 0; i < 200; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  kill -0 "$pid" 2>/dev/null && { kill -TERM "$pid"; sleep 0.5; }
  rm -f "$1/nginx.pid"
  echo "nginx.sh: stopped (pid $pid)"
}

cmd=${1:-}
shift || true
case $cmd in
  start) start "$@" ;;
  run) run "$@" ;;
  stop) stop "$@" ;;
  *) usage ;;
esac
