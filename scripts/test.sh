#!/usr/bin/env bash
# Runs every test: installs the dependencies, configures and builds with CMake/Ninja (ccache),
# runs the unit tests (ctest), checks the deploy files (scripts/check-deploy.sh), then the
# integration tests (node's test runner against real processes on loopback). Prints how
# long each stage took; exits non-zero if any failed.
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
  stage unit ctest --test-dir "$build" --output-on-failure -j"$jobs" --timeout 300
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
