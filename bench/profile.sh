#!/usr/bin/env bash
# CPU profile of the all-in-one's request path under valgrind --tool=callgrind
# (bench/profile.mjs; see bench/README.md, "Profile"). 127.0.0.1 only; bounded in time.
#   bash bench/profile.sh                         # 40 s of non-streamed requests at 2 connections
#   PROFILE_SECONDS=20 PROFILE_STREAM=yes bash bench/profile.sh
# Writes bench/results/profile-<date>/{callgrind.out*, inclusive.txt, self.txt}.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v valgrind >/dev/null; then
  echo "profile: installing valgrind" >&2
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends valgrind
fi
for c in valgrind callgrind_annotate callgrind_control wrk nginx; do
  command -v "$c" >/dev/null || { echo "profile: $c missing (apt-get install valgrind wrk nginx)" >&2; exit 2; }
done
real_build=$(realpath "${OMNI_BUILD_DIR:-build}")
real=$real_build/apps/omniroute/omniroute
[ -x "$real" ] || { echo "profile: $real missing (scripts/build.sh)" >&2; exit 2; }
out=$(realpath -m "${BENCH_RESULTS_DIR:-bench/results}")/profile-$(date -u +%Y-%m-%dT%H-%M-%SZ)
mkdir -p "$out"
wrap=$(mktemp -d /tmp/orbench-profile-XXXXXX)
trap 'rm -rf "$wrap"' EXIT
mkdir -p "$wrap/apps/omniroute"
cat >"$wrap/apps/omniroute/omniroute" <<WRAP
#!/bin/sh
exec valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file=$out/callgrind.out "$real" "\$@"
WRAP
chmod +x "$wrap/apps/omniroute/omniroute"
export PROFILE_OUT=$out/callgrind.out
OMNI_BUILD_DIR=$wrap timeout --foreground --kill-after=30 "$(( ${PROFILE_SECONDS:-40} + 600 ))" node bench/profile.mjs
# The explicit dump is a part file (callgrind.out.1); the exit dump (callgrind.out) has only what
# came after it. Annotate the part with the profiled requests.
f=$out/callgrind.out.1
[ -s "$f" ] || f=$out/callgrind.out
callgrind_annotate --inclusive=yes "$f" >"$out/inclusive.txt"
callgrind_annotate "$f" >"$out/self.txt"
echo "profile: $(cat "$out/callgrind.out.requests") requests; $out/inclusive.txt, $out/self.txt"
head -45 "$out/inclusive.txt" | tail -30
