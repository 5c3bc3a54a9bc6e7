#!/usr/bin/env bash
# Memory of the all-in-one gateway, idle and with 5,000 slow streams open at once
# (bench/streams.mjs; see bench/README.md). 127.0.0.1 only; bounded by STREAMS_MAX_SECONDS.
#   bash bench/streams.sh
#   STREAMS_N=1000 STREAMS_SECONDS=10 bash bench/streams.sh
set -euo pipefail
cd "$(dirname "$0")/.."
# 5,000 streams are 10,000+ descriptors in the gateway (client side and upstream) and 5,000
# in the client and in the stub each. Children inherit the limit.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" -lt 12000 ]; then
  echo "streams: ulimit -n is $(ulimit -n); 5,000 streams need about 12,000 (raise the hard limit)" >&2
fi
exec timeout --foreground --kill-after=30 "${STREAMS_MAX_SECONDS:-900}" node bench/streams.mjs "$@"
