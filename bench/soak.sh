#!/usr/bin/env bash
# Soak test of the all-in-one gateway (bench/soak.mjs; see bench/README.md, "Soak"): steady
# load for SOAK_SECONDS (default 600), RSS every 10 s, fails when RSS grows by more than 10 %
# between the first and the last third. 127.0.0.1 only; stops itself after SOAK_SECONDS + 300.
#   bash bench/soak.sh                 # 10 minutes
#   SOAK_SECONDS=60 bash bench/soak.sh # a quick one
set -euo pipefail
cd "$(dirname "$0")/.."
command -v wrk >/dev/null && command -v nginx >/dev/null || {
  echo "soak: wrk and nginx are needed (bench/run.sh installs them)" >&2; exit 2; }
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
secs=${SOAK_SECONDS:-600}
exec timeout --foreground --kill-after=30 "$((secs + ${SOAK_WARMUP:-20} + 300))" node bench/soak.mjs "$@"
