#!/usr/bin/env bash
# Opt-in check of the images' runtime stages without a Docker engine: for each target, a
# minimal Debian 12 root file system (mmdebstrap --variant=minbase, close to debian:12-slim)
# with exactly the packages the Dockerfile installs for it, the Dockerfile's user set-up,
# the target's binary and default config; then, as uid 10001, no library may be missing,
# the image's HEALTHCHECK command must pass, and SIGTERM to the binary running as PID 1 must
# end it with status 0. Not part of CI: it needs root, the Debian mirror and about a minute
# per package set (cached in $OMNI_ROOTFS_CACHE, default /tmp/omni-rootfs).
#
#   apt-get install mmdebstrap && deploy/docker/rootfs-test.sh [BUILD_DIR]
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
build="${1:-${OMNI_BUILD_DIR:-$root/build}}"
cache="${OMNI_ROOTFS_CACHE:-/tmp/omni-rootfs}"
[ "$(id -u)" = 0 ] || { echo "rootfs-test: run as root (chroot, mount)" >&2; exit 2; }
command -v mmdebstrap >/dev/null || { echo "rootfs-test: apt-get install mmdebstrap" >&2; exit 2; }

declare -A binary=(
  [omniroute]=apps/omniroute/omniroute [edge]=services/edge/omniroute-edge
  [router]=services/router/omniroute-router [translator]=services/translator/omniroute-translator
  [accounts]=services/accounts/omniroute-accounts [usage]=services/usage/omniroute-usage
)
# The HEALTHCHECK commands of the Dockerfile (exec form: bash -c "...").
hc_http="exec 3<>/dev/tcp/127.0.0.1/\"\${PORT:-20128}\" && printf 'GET /healthz HTTP/1.0\\r\\n\\r\\n' >&3 && head -n 1 <&3 | grep -q ' 200 '"
hc_grpc="exec 3<>/dev/tcp/127.0.0.1/\"\$(sed 's/.*://' <<<\"\$OMNIROUTE_LISTEN\")\""

failed=0
port=28900
for t in omniroute edge router translator accounts usage; do
  port=$((port + 1))
  bin="$build/${binary[$t]}"
  [ -x "$bin" ] || { echo "FAIL $t: $bin not built"; failed=1; continue; }
  pkgs=$(bash "$here/runtime-packages.sh" --packages "$t" | sort | tr '\n' ',' | sed 's/,$//')
  fs="$cache/$(printf '%s' "$pkgs" | sha256sum | cut -c1-16)"
  if [ ! -f "$fs/.done" ]; then
    rm -rf "$fs"
    mkdir -p "$cache"
    echo "building $fs: minbase + $pkgs"
    mmdebstrap --quiet --variant=minbase --include="$pkgs" bookworm "$fs" || { echo "FAIL $t: mmdebstrap"; failed=1; continue; }
    # the Dockerfile's user set-up
    chroot "$fs" sh -c 'groupadd --system --gid 10001 omniroute && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/omniroute --shell /usr/sbin/nologin omniroute && install -d -o 10001 -g 10001 -m 0750 /var/lib/omniroute && install -d -m 0755 /etc/omniroute' 2>/dev/null \
      || { echo "FAIL $t: user set-up"; failed=1; continue; }
    touch "$fs/.done"
  fi
  name=$(basename "$bin")
  cp "$bin" "$fs/usr/local/bin/$name"
  cp "$here/omniroute.yaml" "$fs/etc/omniroute/omniroute.yaml"
  missing=$(chroot "$fs" ldd "/usr/local/bin/$name" | grep 'not found')
  if [ -n "$missing" ]; then echo "FAIL $t: $missing"; failed=1; continue; fi
  env=(OMNIROUTE_CONFIG=/etc/omniroute/omniroute.yaml DATA_DIR=/var/lib/omniroute
       HOME=/var/lib/omniroute PATH=/usr/local/bin:/usr/bin:/bin)
  case $t in
    omniroute|edge) env+=("PORT=$port"); hc=$hc_http ;;
    *) env+=("OMNIROUTE_LISTEN=127.0.0.1:$port"); hc=$hc_grpc ;;
  esac
  if [ "$t" = edge ]; then
    for s in ROUTER TRANSLATOR ACCOUNTS USAGE; do env+=("OMNIROUTE_${s}_ADDR=127.0.0.1:9"); done
  fi
  log=$(mktemp)
  # a new PID namespace: the binary is PID 1, as in a container
  unshare --mount --pid --fork sh -c "mount -t proc proc '$fs/proc' && exec chroot --userspec=10001:10001 '$fs' env -i ${env[*]} /usr/local/bin/$name" >"$log" 2>&1 &
  upid=$!
  healthy=0
  for _ in $(seq 100); do
    if chroot --userspec=10001:10001 "$fs" env -i "${env[@]}" bash -c "$hc" 2>/dev/null; then healthy=1; break; fi
    kill -0 "$upid" 2>/dev/null || break
    sleep 0.1
  done
  bpid=$(pgrep -P "$upid" | head -n 1)
  [ -n "$bpid" ] && kill -TERM "$bpid"
  wait "$upid"
  rc=$?
  umount "$fs/proc" 2>/dev/null
  if [ "$healthy" = 1 ] && [ "$rc" = 0 ]; then
    echo "ok   $t: minbase + $pkgs; no missing library, HEALTHCHECK passed as uid 10001, SIGTERM to PID 1 -> exit 0"
  else
    echo "FAIL $t: healthy=$healthy exit=$rc"
    tail -n 5 "$log"
    failed=1
  fi
  rm -f "$log"
done
exit "$failed"
