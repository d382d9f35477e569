# Starts a throwaway PostgreSQL cluster on a free loopback port.
# Source it: it exports TRELLIS_TEST_PG_URL and PG_TMP, and defines stop_postgres.
# Installs PostgreSQL from Debian's packages when it is missing. Fails loudly.

find_pg_bin() {
  local d
  if command -v pg_config >/dev/null 2>&1 && [ -x "$(pg_config --bindir)/initdb" ]; then
    pg_config --bindir; return 0
  fi
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then echo "$d"; return 0; fi
  done
  return 1
}

PG_BIN=$(find_pg_bin || true)
if [ -z "$PG_BIN" ]; then
  echo "== PostgreSQL is not installed: installing it from Debian's packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq postgresql >/dev/null
  PG_BIN=$(find_pg_bin || true)
fi
if [ -z "$PG_BIN" ]; then
  echo "FATAL: PostgreSQL could not be installed (no initdb found); the PostgreSQL tests cannot run" >&2
  exit 1
fi

# initdb refuses to run as root: run the cluster as an unprivileged user.
PG_USER=$(id -un)
if [ "$(id -u)" = "0" ]; then
  if id postgres >/dev/null 2>&1; then PG_USER=postgres
  else
    id trellisci >/dev/null 2>&1 || useradd --system --no-create-home trellisci
    PG_USER=trellisci
  fi
fi
as_pg() { if [ "$(id -un)" = "$PG_USER" ]; then "$@"; else runuser -u "$PG_USER" -- "$@"; fi; }

PG_TMP=$(mktemp -d /tmp/trellis-pg.XXXXXX)
chown "$PG_USER" "$PG_TMP"
PG_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
as_pg "$PG_BIN/initdb" -D "$PG_TMP/data" -U postgres --auth=trust -E UTF8 --no-locale >"$PG_TMP/initdb.log" 2>&1 || {
  echo "FATAL: initdb failed:" >&2; cat "$PG_TMP/initdb.log" >&2; exit 1; }
as_pg "$PG_BIN/pg_ctl" -D "$PG_TMP/data" -l "$PG_TMP/server.log" -w -t 60 \
  -o "-p $PG_PORT -k $PG_TMP -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300" \
  start >/dev/null || { echo "FATAL: PostgreSQL did not start:" >&2; cat "$PG_TMP/server.log" >&2; exit 1; }

export PG_TMP PG_BIN
export TRELLIS_TEST_PG_URL="postgres://postgres@127.0.0.1:$PG_PORT/postgres"
# The outage test starts, stops and restarts a cluster of its own with these.
export TRELLIS_TEST_PG_BIN="$PG_BIN" TRELLIS_TEST_PG_USER="$PG_USER"
echo "== PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}') running on 127.0.0.1:$PG_PORT"

stop_postgres() {
  as_pg "$PG_BIN/pg_ctl" -D "$PG_TMP/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$PG_TMP"
}
