#!/usr/bin/env bash
# Installs every build and test dependency from Debian 12's packages.
#   --build-only   only what compiling needs (the container images' build stage uses this)
set -euo pipefail
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
BUILD_PKGS=(
  build-essential cmake ninja-build ccache pkg-config git ca-certificates curl
  libgrpc++-dev libgrpc-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libabsl-dev libboost1.81-dev libboost-json1.81-dev libboost-url1.81-dev
  libpqxx-dev libhiredis-dev prometheus-cpp-dev libyaml-cpp-dev
  libgtest-dev libgmock-dev libsqlite3-dev libssl-dev
)
TEST_PKGS=(
  clang libclang-rt-14-dev
  redis-server postgresql postgresql-client sqlite3 nodejs npm
  docker-compose yamllint prometheus   # scripts/check-deploy.sh (prometheus: promtool)
)
PKGS=("${BUILD_PKGS[@]}")
case "${1:-}" in
  --build-only) ;;
  "") PKGS+=("${TEST_PKGS[@]}") ;;
  *) echo "usage: $0 [--build-only]" >&2; exit 2 ;;
esac
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# node/npm may come from the machine image rather than Debian; don't fight it.
if command -v node >/dev/null && command -v npm >/dev/null; then
  missing=("${missing[@]/nodejs}"); missing=("${missing[@]/npm}")
fi
clean=(); for p in "${missing[@]}"; do [ -n "$p" ] && clean+=("$p"); done
if [ ${#clean[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${clean[@]}"
fi
