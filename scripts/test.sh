#!/usr/bin/env bash
# Runs every test: installs the dependencies, configures and builds with CMake/Ninja (ccache),
# runs the unit tests (ctest, with a throwaway PostgreSQL and the mock OAuth server, so the
# PostgreSQL store tests and the OAuth end-to-end test run instead of skipping), checks the
# deploy files (scripts/check-deploy.sh), then the integration tests (node's test runner
# against real processes on loopback). Prints how long each stage took; exits non-zero if
# any failed.
#
# Environment:
#   OMNI_BUILD_DIR      build directory (default <repo>/build)
#   CMAKE_BUILD_TYPE    build type for a fresh configure (default RelWithDebInfo)
#   OMNI_BUILD_JOBS     parallel build jobs (default 2)
#   OMNI_TEST_TIMEOUT   per-test timeout of the integration tests in ms (default 120000)
#   OMNI_IT_TIMEOUT     wall-clock limit of the whole integration stage in s (default 1500)
#   OMNI_IT_MODES       integration modes to run (default allinone,distributed)
#   OMNI_SKIP_BUILD=1   use the binaries already in the build directory
#   OMNI_TEST_PG_URL    a PostgreSQL for the unit tests (default: a throwaway cluster)
#   OMNI_MOCK_OAUTH_URL a running tests/integration/mock-oauth.mjs (default: one is started)
#   OMNI_PG_BIN         PostgreSQL's binaries (default /usr/lib/postgresql/15/bin)
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
# shellcheck source=lib/stages.sh
source "$root/scripts/lib/stages.sh"

export CCACHE_BASEDIR="$root" CCACHE_NOHASHDIR=1
build="${OMNI_BUILD_DIR:-$root/build}"
export OMNI_BUILD_DIR="$build"
jobs="${OMNI_BUILD_JOBS:-2}"

# Runs a command holding the build lock (other builds on a shared machine wait their turn).
locked() {
  if command -v flock >/dev/null; then
    flock "${OMNI_BUILD_LOCK:-/tmp/omni-build.lock}" "$@"
  else
    "$@"
  fi
}

configure() {
  local args=(-S "$root" -B "$build")
  if [ ! -f "$build/CMakeCache.txt" ]; then
    args+=(-G Ninja -DCMAKE_BUILD_TYPE="${CMAKE_BUILD_TYPE:-RelWithDebInfo}")
  elif [ -n "${CMAKE_BUILD_TYPE:-}" ]; then
    args+=(-DCMAKE_BUILD_TYPE="$CMAKE_BUILD_TYPE")
  fi
  # An existing build directory keeps its generator and build type unless asked otherwise.
  locked cmake "${args[@]}"
}

build_all() {
  locked cmake --build "$build" -j"$jobs"
}

# ---- Services the unit tests use: a throwaway PostgreSQL cluster and the mock OAuth server,
# started before ctest and stopped after it (and by the EXIT trap if the script dies first).
unit_dir=""
unit_pg_run=()
unit_pg_url=""
unit_mock_pid=""
unit_oauth_url=""
unit_pg_tests='Postgres'   # ctest -R: the tests that use OMNI_TEST_PG_URL

stop_unit_services() {
  if [ -n "$unit_mock_pid" ]; then
    kill -TERM "$unit_mock_pid" 2>/dev/null
    wait "$unit_mock_pid" 2>/dev/null
    unit_mock_pid=""
  fi
  if [ -n "$unit_dir" ]; then
    if [ -f "$unit_dir/data/postmaster.pid" ]; then
      "${unit_pg_run[@]}" "${OMNI_PG_BIN:-/usr/lib/postgresql/15/bin}/pg_ctl" -D "$unit_dir/data" \
        -m fast -w -t 30 stop >/dev/null 2>&1
    fi
    rm -rf "$unit_dir"
    unit_dir=""
  fi
}
trap stop_unit_services EXIT

# A free TCP port on loopback (the kernel's choice; released before postgres takes it).
free_port() {
  node -e 'const s = require("net").createServer().listen(0, "127.0.0.1", () => {
    console.log(s.address().port); s.close(); });'
}

# Starts PostgreSQL 15 in $unit_dir on a free loopback port (as tests/integration/lib/postgres.mjs
# does): initdb refuses to run as root, so as root the cluster belongs to the postgres user.
# Sets unit_pg_url to a fresh database.
start_unit_postgres() {
  local bin="${OMNI_PG_BIN:-/usr/lib/postgresql/15/bin}" port sock="$unit_dir/s"
  [ -x "$bin/initdb" ] || { echo "unit: no PostgreSQL in $bin (OMNI_PG_BIN)" >&2; return 1; }
  if [ ${#sock} -gt 90 ]; then
    echo "unit: $sock is too long for a unix socket path (set TMPDIR)" >&2
    return 1
  fi
  mkdir -p "$sock" && chmod 755 "$unit_dir" "$sock" || return 1
  if [ "$(id -u)" = 0 ]; then
    chown postgres: "$unit_dir" "$sock" || return 1
    unit_pg_run=(runuser -u postgres --)
  fi
  unit_pg_run+=(env HOME="$unit_dir" LANG=C LC_ALL=C)
  "${unit_pg_run[@]}" "$bin/initdb" -D "$unit_dir/data" --no-sync -A trust -U postgres -E UTF8 \
    --locale=C >"$unit_dir/initdb.log" 2>&1 || { cat "$unit_dir/initdb.log" >&2; return 1; }
  port=$(free_port) || return 1
  "${unit_pg_run[@]}" "$bin/pg_ctl" -D "$unit_dir/data" -l "$unit_dir/data/postgres.log" -w -t 30 \
    -o "-p $port -k $sock -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off" \
    -o "-c full_page_writes=off -c max_connections=200 -c shared_buffers=32MB" \
    start >/dev/null || { tail -n 20 "$unit_dir/data/postgres.log" >&2; return 1; }
  PGCONNECT_TIMEOUT=3 psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U postgres -d postgres \
    -c 'create database omniroute_test' || return 1
  unit_pg_url="postgresql://postgres@127.0.0.1:$port/omniroute_test"
}

# Starts the mock OAuth server in the background; sets unit_oauth_url once it listens.
start_unit_mock_oauth() {
  local log="$unit_dir/mock-oauth.log" i
  node "$root/tests/integration/mock-oauth.mjs" >"$log" 2>&1 &
  unit_mock_pid=$!
  for i in $(seq 200); do  # 10 s
    if grep -q '^http' "$log"; then
      unit_oauth_url=$(grep -m 1 '^http' "$log")
      return 0
    fi
    kill -0 "$unit_mock_pid" 2>/dev/null || break
    sleep 0.05
  done
  echo "unit: the mock OAuth server did not start: $(tail -n 5 "$log")" >&2
  return 1
}

unit() {
  local status
  unit_pg_url="${OMNI_TEST_PG_URL:-}"
  unit_oauth_url="${OMNI_MOCK_OAUTH_URL:-}"
  unit_dir=$(mktemp -d "${TMPDIR:-/tmp}/omni-unit.XXXXXX") || return 1
  if [ -z "$unit_pg_url" ]; then
    start_unit_postgres || { echo "unit: cannot start PostgreSQL" >&2; stop_unit_services; return 1; }
    echo "unit: throwaway PostgreSQL at $unit_pg_url"
  fi
  if [ -z "$unit_oauth_url" ]; then
    start_unit_mock_oauth || { stop_unit_services; return 1; }
    echo "unit: mock OAuth server at $unit_oauth_url"
  fi
  # The tests that use PostgreSQL share its database (and one of them terminates every
  # connection to it): they run one at a time, after the others.
  local env=(env OMNI_TEST_PG_URL="$unit_pg_url" OMNI_MOCK_OAUTH_URL="$unit_oauth_url")
  "${env[@]}" ctest --test-dir "$build" --output-on-failure -j"$jobs" --timeout 300 -E "$unit_pg_tests"
  status=$?
  "${env[@]}" ctest --test-dir "$build" --output-on-failure -j1 --timeout 300 -R "$unit_pg_tests" \
    || status=1
  stop_unit_services
  return $status
}

integration() {
  timeout --kill-after=30 "${OMNI_IT_TIMEOUT:-1500}" \
    node --test --test-reporter=spec --test-concurrency=1 \
    --test-timeout="${OMNI_TEST_TIMEOUT:-120000}" tests/integration/
}

# libFuzzer targets: a clang build of the parsers and translators with ASan/UBSan, each
# run for OMNI_FUZZ_SECONDS (default 30) from its checked-in corpus.
fuzz() {
  local fbuild="${OMNI_FUZZ_BUILD_DIR:-$root/build-fuzz}"
  local targets
  if [ ! -f "$fbuild/CMakeCache.txt" ]; then
    CC=clang CXX=clang++ cmake -S "$root" -B "$fbuild" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DOMNI_FUZZ=ON -DOMNI_TESTS=OFF || return 1
  fi
  local available
  available=$(cmake --build "$fbuild" --target help | sed -n 's/^\([a-z_]*_fuzz\):.*/\1/p')
  targets=($available)
  local t
  for t in "${targets[@]}"; do
    flock "${OMNI_BUILD_LOCK:-/tmp/omni-build.lock}" cmake --build "$fbuild" -j"$jobs" --target "$t" || return 1
  done
  for t in "${targets[@]}"; do
    local bin corpus work
    bin=$(find "$fbuild" -type f -name "$t" -perm -u+x | head -n 1)
    corpus=$(find "$root" -path "$root/build*" -prune -o -type d -name "${t%_fuzz}_corpus" -print | head -n 1)
    work=$(mktemp -d)
    [ -n "$corpus" ] && cp -r "$corpus"/. "$work"/
    echo "fuzz: $t for ${OMNI_FUZZ_SECONDS:-30} s"
    "$bin" -max_total_time="${OMNI_FUZZ_SECONDS:-30}" -max_len=65536 -timeout=10 "$work" \
      > "$work.log" 2>&1 || { tail -n 60 "$work.log"; return 1; }
    tail -n 1 "$work.log"
    rm -rf "$work" "$work.log"
  done
}

stage deps bash scripts/install-deps.sh
deps_ok=$?

built=1
if [ "${OMNI_SKIP_BUILD:-0}" = 1 ]; then
  skip_stage configure "OMNI_SKIP_BUILD=1"
  skip_stage build "OMNI_SKIP_BUILD=1"
elif [ "$deps_ok" -ne 0 ]; then
  skip_stage configure "dependencies failed"
  skip_stage build "dependencies failed"
  built=0
elif stage configure configure; then
  stage build build_all || built=0
else
  skip_stage build "configure failed"
  built=0
fi

if [ "$built" -eq 1 ]; then
  stage unit unit
else
  skip_stage unit "nothing built"
fi

# Deploy files (Dockerfile, compose, Kubernetes, Helm, dashboard), checked offline; uses
# the binaries when they were built.
stage deploy bash scripts/check-deploy.sh

# The integration tests' npm packages, then the coding CLIs that clis.test.mjs runs (large;
# without them those tests skip, so a failed install only warns).
npm_packages() {
  npm ci --prefix tests/integration --no-audit --no-fund || return 1
  if ! npm ci --prefix tests/integration/clis --no-audit --no-fund; then
    echo "warning: the coding CLIs did not install: tests/integration/clis.test.mjs will skip" >&2
  fi
  return 0
}

if stage npm npm_packages; then
  if [ "$built" -eq 1 ]; then
    stage integration integration
  else
    # Without binaries only the harness and mock self-tests can run.
    stage integration timeout 600 node --test --test-reporter=spec --test-concurrency=1 \
      tests/integration/mock-provider.test.mjs tests/integration/harness.test.mjs
    STAGES_FAILED=$((STAGES_FAILED + 1))
  fi
else
  skip_stage integration "npm ci failed"
fi

if [ "${OMNI_SKIP_FUZZ:-0}" = 1 ]; then
  skip_stage fuzz "OMNI_SKIP_FUZZ=1"
else
  stage fuzz fuzz
fi

stages_summary
