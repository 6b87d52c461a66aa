#!/usr/bin/env bash
# Starts a throwaway PostgreSQL cluster for Ember's tests and prints its DSN
# (the value for EMBER_TEST_POSTGRES). Idempotent: a cluster already running
# in DIR is reused. Debian's PostgreSQL (apt-get install postgresql) is
# enough; initdb refuses root, so as root the cluster runs as user postgres.
#
#   scripts/postgres-test.sh [start|stop] [DIR]
#     DIR   cluster directory (default /tmp/ember-postgres)
#     EMBER_PG_PORT  port on 127.0.0.1 (default 55432)
#     PG_BIN         PostgreSQL's bin dir (default the newest /usr/lib/postgresql/*/bin)
#
# Tests create a database of their own in it and drop it afterwards, so one
# cluster serves every package that `go test ./...` runs in parallel.
set -euo pipefail
cmd=${1:-start}
dir=${2:-/tmp/ember-postgres}
port=${EMBER_PG_PORT:-55432}
bin=${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}
if [ -z "$bin" ] || [ ! -x "$bin/initdb" ]; then
  echo "postgres-test.sh: no PostgreSQL found (apt-get install postgresql, or set PG_BIN)" >&2
  exit 1
fi
as_owner() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
case $cmd in
start)
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    mkdir -p "$dir/data" "$dir/sock"
    [ "$(id -u)" = 0 ] && chown -R postgres: "$dir"
    chmod 0700 "$dir/data"
    # -U postgres: the superuser is postgres whoever runs this.
    as_owner "$bin/initdb" -A trust --no-sync -U postgres -D "$dir/data" >"$dir/initdb.log" 2>&1 ||
      { cat "$dir/initdb.log" >&2; exit 1; }
  fi
  if ! as_owner "$bin/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
    # fsync off and unlogged-style speed: the cluster is thrown away.
    as_owner "$bin/pg_ctl" -w -D "$dir/data" -l "$dir/server.log" start \
      -o "-c listen_addresses=127.0.0.1 -p $port -k $dir/sock -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300" >/dev/null ||
      { cat "$dir/server.log" >&2; exit 1; }
  fi
  echo "postgres://postgres@127.0.0.1:$port/postgres?sslmode=disable"
  ;;
stop)
  as_owner "$bin/pg_ctl" -D "$dir/data" -m fast stop >/dev/null 2>&1 || true
  ;;
*)
  echo "usage: $0 [start|stop] [DIR]" >&2
  exit 2
  ;;
esac
