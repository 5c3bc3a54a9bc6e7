#!/usr/bin/env bash
# Runs every test: installs the dependencies, configures and builds with CMake/Ninja (ccache),
# runs the unit tests (ctest), then the integration tests (node's test runner against real
# processes on loopback). Prints how long each stage took; exits non-zero if any failed.
#
# Environment:
#   OMNI_BUILD_DIR      build directory (default <repo>/build)
#   CMAKE_BUILD_TYPE    build type for a fresh configure (default RelWithDebInfo)
#   OMNI_BUILD_JOBS     parallel build jobs (default 2)
#   OMNI_TEST_TIMEOUT   per-test timeout of the integration tests in ms (default 120000)
#   OMNI_IT_TIMEOUT     wall-clock limit of the whole integration stage in s (default 1500)
#   OMNI_IT_MODES       integration modes to run (default allinone,distributed)
#   OMNI_SKIP_BUILD=1   use the binaries already in the build directory
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

integration() {
  timeout --kill-after=30 "${OMNI_IT_TIMEOUT:-1500}" \
    node --test --test-reporter=spec --test-concurrency=1 \
    --test-timeout="${OMNI_TEST_TIMEOUT:-120000}" tests/integration/
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
  stage unit ctest --test-dir "$build" --output-on-failure -j"$jobs" --timeout 300
else
  skip_stage unit "nothing built"
fi

if stage npm npm ci --prefix tests/integration --no-audit --no-fund; then
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

stages_summary
