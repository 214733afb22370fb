#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for the test suite, from the installed server binaries.
#   tests/support/pg_cluster.sh start DIR   initdb + pg_ctl on 127.0.0.1 (free port, socket in DIR);
#                                   prints the DATABASE_URL; exit 3 when no server binaries exist
#   tests/support/pg_cluster.sh stop DIR    stop it (the caller removes DIR)
#   tests/support/pg_cluster.sh restart DIR [SECONDS]  stop it in immediate mode (a crash: every
#                                   connection cut), wait SECONDS (default 0), start it on the same port
# As root (CI), the server runs as the `postgres` user, since PostgreSQL refuses to run as root.
set -euo pipefail

find_bin() {
  local dir
  for dir in /usr/lib/postgresql/*/bin; do
    if [ -x "$dir/initdb" ]; then
      echo "$dir"
      return 0
    fi
  done
  if command -v initdb >/dev/null 2>&1; then
    dirname "$(command -v initdb)"
    return 0
  fi
  return 1
}

as_owner() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

usage() {
  sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'
}

[ $# -eq 2 ] || [ $# -eq 3 ] || { usage >&2; exit 2; }
action=$1
dir=$2

case "$action" in
  start)
    if ! bin=$(find_bin); then
      echo "no PostgreSQL server binaries (initdb, pg_ctl) found" >&2
      exit 3
    fi
    mkdir -p "$dir"
    if [ "$(id -u)" -eq 0 ]; then
      chown postgres: "$dir"
      chmod a+x "$(dirname "$dir")"  # e.g. a mktemp -d parent (0700): postgres must pass through
    fi
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    as_owner "$bin/initdb" -D "$dir/data" -U reeve -A trust -E UTF8 --no-locale >"$dir/initdb.log" 2>&1
    echo "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300" >"$dir/options"
    as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 -o "$(cat "$dir/options")" start >/dev/null
    as_owner "$bin/createdb" -h 127.0.0.1 -p "$port" -U reeve reeve
    echo "postgres://reeve@127.0.0.1:$port/reeve"
    ;;
  stop)
    bin=$(find_bin)
    as_owner "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
    ;;
  restart)
    bin=$(find_bin)
    as_owner "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null
    sleep "${3:-0}"
    as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 -o "$(cat "$dir/options")" start >/dev/null
    ;;
  *)
    usage >&2
    exit 2
    ;;
esac
