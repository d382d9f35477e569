#!/usr/bin/env bash
# The benchmark against the hand-written reference server, on SQLite and PostgreSQL.
#   bash bench/run.sh [bench.py options, e.g. --db sqlite --runs 3 --seconds 10]
# Builds both servers (release), installs wrk if missing, starts a throwaway
# PostgreSQL (unless TRELLIS_BENCH_PG_URL is set), and prints the report.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
command -v psql >/dev/null || { apt-get update -qq && apt-get install -y -qq postgresql-client >/dev/null; }
# Both servers are built with the default allocator (mimalloc);
# TRELLIS_BENCH_GLIBC=1 builds both with glibc's malloc instead.
flags=()
if [ -n "${TRELLIS_BENCH_GLIBC:-}" ]; then flags=(--no-default-features); fi
cargo build --release --quiet "${flags[@]}" --bin trellis
cargo build --release --quiet "${flags[@]}" --features bench --bin trellis-reference
if [ -z "${TRELLIS_BENCH_PG_URL:-}" ]; then
  source .ci/postgres.sh
  trap stop_postgres EXIT
  export TRELLIS_BENCH_PG_URL="$TRELLIS_TEST_PG_URL"
fi
python3 bench/bench.py "$@"
