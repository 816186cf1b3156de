#!/usr/bin/env bash
# A throwaway PostgreSQL 15 cluster that archives through airlock's wal-push, for the demo and for
# trying airlock out. It runs as the `postgres` OS user when started by root (initdb refuses root),
# listens on 127.0.0.1 only, keeps its socket in DIR/sock, and writes WAL into the spool DIR/spool.
#
#   scripts/pg.sh start DIR   wipes DIR, initialises and starts the cluster, prints one line
#                             "PG_READY port=PORT socket=DIR/sock spool=DIR/spool data=DIR/data"
#   scripts/pg.sh stop DIR    fast shutdown through pg_ctl (the server's PID is in DIR/data)
#
# archive_command runs as the cluster's user, which must be able to run the CLI: dist/ is copied to
# DIR/cli (wal-push and wal-fetch need no node_modules). It is the native helper
# dist/native/airlock-wal-push when the build made it, else airlock wal-push.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

usage() { echo "usage: pg.sh start DIR | pg.sh stop DIR" >&2; exit 2; }
BIN=/usr/lib/postgresql/15/bin
ROOT=$(cd "$(dirname "$0")/.." && pwd)

as_owner() { # run a command as the cluster's user
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}


start() {
  local dir=$1 port
  [ -f "$ROOT/dist/agent/cli/main.js" ] || { echo "pg.sh: build first (npm run build)" >&2; exit 1; }
  rm -rf "$dir"
  mkdir -p "$dir/sock" "$dir/spool" "$dir/cli"
  cp -r "$ROOT/dist" "$ROOT/package.json" "$dir/cli/"
  chmod -R a+rX "$dir/cli"
  [ "$(id -u)" = 0 ] && chown postgres: "$dir" "$dir/sock" "$dir/spool"
  # the agent (root in the demo) reads the spool; the cluster's user writes it
  chmod 750 "$dir/spool"
  as_owner "$BIN/initdb" -D "$dir/data" -U postgres -E UTF8 --locale=C --auth-local=trust --auth-host=scram-sha-256 >/dev/null
  port=$(free_port)
  local archive="$(command -v node) $dir/cli/dist/agent/cli/main.js wal-push %p --spool $dir/spool"
  [ -x "$dir/cli/dist/native/airlock-wal-push" ] && archive="$dir/cli/dist/native/airlock-wal-push %p --spool $dir/spool"
  cat >> "$dir/data/postgresql.conf" <<CONF
# airlock throwaway cluster
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir/sock'
wal_level = replica
archive_mode = on
archive_command = '$archive'
archive_timeout = 10
track_commit_timestamp = on
CONF
  as_owner "$BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start >/dev/null
  echo "PG_READY port=$port socket=$dir/sock spool=$dir/spool data=$dir/data"
}

stop() {
  local dir=$1
  [ -f "$dir/data/postmaster.pid" ] || return 0
  as_owner "$BIN/pg_ctl" -D "$dir/data" -m fast -w -t 30 stop >/dev/null
}

case "${1:-}" in
  start) [ $# -eq 2 ] || usage; start "$2" ;;
  stop) [ $# -eq 2 ] || usage; stop "$2" ;;
  *) usage ;;
esac
