#!/usr/bin/env bash
# The benchmark's entry point (see bench/README.md):
#   bash bench/run.sh                        # both modes, 10 s per measurement, one run
#   BENCH_REPEAT=3 bash bench/run.sh         # three runs, medians in the summary
#   BENCH_MODES=allinone BENCH_DURATION=5s bash bench/run.sh
# Installs nginx and wrk from Debian's packages when missing; never builds the gateway (run
# scripts/build.sh first); sends traffic to 127.0.0.1 only; stops itself after
# BENCH_MAX_SECONDS (default 7200) whatever happens.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi

# The project's own dependencies (redis-server, PostgreSQL, sqlite3, node) come from
# scripts/install-deps.sh; the load generator and the upstream stub are the bench's.
pg_bin=${OMNI_PG_BIN:-/usr/lib/postgresql/15/bin}
for c in node redis-server psql sqlite3; do
  if ! command -v "$c" >/dev/null || [ ! -x "$pg_bin/postgres" ]; then
    echo "bench: $c or PostgreSQL missing; running scripts/install-deps.sh" >&2
    bash scripts/install-deps.sh
    break
  fi
done
need=()
command -v nginx >/dev/null || need+=(nginx)
command -v wrk >/dev/null || need+=(wrk)
if [ ${#need[@]} -gt 0 ]; then
  echo "bench: installing ${need[*]}" >&2
  had_system_nginx=0
  [ -s /run/nginx.pid ] && had_system_nginx=1
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
  # Where an init system lets it, Debian's package starts the system-wide nginx on port 80:
  # the bench runs its own, so stop the one the install just started.
  if [ "$had_system_nginx" = 0 ] && [ -s /run/nginx.pid ]; then $SUDO nginx -s quit || true; fi
fi

# 500 connections through a gateway are 1000+ descriptors in it (client side and upstream);
# the slow-stream test (bench/streams.sh) needs 10,000+. Children inherit the limit.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# --foreground: Ctrl-C still reaches node, whose exit handler stops every process it started.
exec timeout --foreground --kill-after=30 "${BENCH_MAX_SECONDS:-7200}" node bench/bench.mjs "$@"
