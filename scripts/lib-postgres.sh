# Sourced by scripts/test (and benchmarks): a throwaway PostgreSQL cluster for the tests.
# start_postgres DIR: installs Debian's postgresql (and libpq-dev) when missing, creates a
# cluster in DIR with initdb (not the system service), starts it on a free loopback port as
# the current user (or as `postgres` when running as root, which initdb refuses), creates a
# database `chorus` and exports CHORUS_TEST_POSTGRES_URL. stop_postgres DIR stops it.
start_postgres() {
  local dir=$1
  scripts/setup debug postgresql libpq-dev >&2
  local bin
  bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
  local port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  local run_as=()
  rm -rf "$dir" && mkdir -p "$dir"
  if [ "$(id -u)" -eq 0 ]; then
    chown postgres "$dir"
    run_as=(runuser -u postgres --)
  fi
  "${run_as[@]}" "$bin/initdb" -D "$dir/data" -U chorus -A trust --no-sync > "$dir/initdb.log" 2>&1 \
    || { echo "postgres: initdb failed: $(tail -3 "$dir/initdb.log")" >&2; return 1; }
  "${run_as[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
    -o "-h 127.0.0.1 -p $port -k $dir -c fsync=off -c max_connections=200" start > /dev/null \
    || { echo "postgres: the server did not start: $(tail -3 "$dir/server.log")" >&2; return 1; }
  "${run_as[@]}" "$bin/createdb" -h 127.0.0.1 -p "$port" -U chorus chorus
  export CHORUS_TEST_POSTGRES_URL="postgres://chorus@127.0.0.1:$port/chorus"
  echo "postgres: a throwaway cluster on 127.0.0.1:$port ($dir)" >&2
}

stop_postgres() {
  local dir=$1
  local bin
  bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
  local run_as=()
  [ "$(id -u)" -eq 0 ] && run_as=(runuser -u postgres --)
  [ -d "$dir/data" ] && "${run_as[@]}" "$bin/pg_ctl" -D "$dir/data" -m immediate stop > /dev/null 2>&1 || true
  rm -rf "$dir"
}
