#!/usr/bin/env bash
# Checks the runtime package lists of deploy/docker/Dockerfile against the binaries: for
# each image target, every shared library that `ldd` shows its binary loading must come
# from a Debian package the target installs (itself or through that package's
# dependencies), every library the binary links directly (ELF NEEDED) must come from a
# package the target names, and the target names no package its binary does not need.
# The package owning a library is found with `dpkg -S`; dependencies with `dpkg-query`, so
# run it on a Debian 12 machine where the binaries were built (the build installed the
# packages). Exit 0 when every target is covered, 1 otherwise, 2 on usage errors.
#
#   deploy/docker/runtime-packages.sh [--print] [BUILD_DIR]
#     BUILD_DIR  where the binaries are (default: $OMNI_BUILD_DIR, else <repo>/build)
#     --print    print the packages each binary needs, for writing the Dockerfile
#   deploy/docker/runtime-packages.sh --packages TARGET
#     print the packages the Dockerfile installs for TARGET (no binaries needed)
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
dockerfile="${RUNTIME_PACKAGES_DOCKERFILE:-$here/Dockerfile}"  # override: tests
print=0
only_packages=""
if [ "${1:-}" = --print ]; then print=1; shift; fi
if [ "${1:-}" = --packages ]; then only_packages=${2:?--packages TARGET}; shift 2; fi
build="${1:-${OMNI_BUILD_DIR:-$root/build}}"

# target -> binary, relative to the build directory
declare -A binary=(
  [omniroute]=apps/omniroute/omniroute
  [edge]=services/edge/omniroute-edge
  [router]=services/router/omniroute-router
  [translator]=services/translator/omniroute-translator
  [accounts]=services/accounts/omniroute-accounts
  [usage]=services/usage/omniroute-usage
)
targets=(omniroute edge router translator accounts usage)
# Packages the images may install although no binary loads a library from them.
allowed_extra=(ca-certificates)
# The C and C++ runtimes: in debian:12-slim already and a dependency of every C++ library.
base_pkgs=(libc6 libgcc-s1 libstdc++6)

# --- the Dockerfile: packages each stage installs and the stage it starts from
declare -A stage_pkgs stage_parent
while IFS=$'\t' read -r stage parent pkgs; do
  stage_pkgs[$stage]="$pkgs"
  stage_parent[$stage]="$parent"
done < <(awk '
  # join continuation lines
  /\\[[:space:]]*$/ { sub(/\\[[:space:]]*$/, ""); buf = buf $0 " "; next }
  { line = buf $0; buf = "" }
  line ~ /^[[:space:]]*#/ { next }
  toupper(line) ~ /^[[:space:]]*FROM[[:space:]]/ {
    if (stage != "") print stage "\t" parent "\t" pkgs
    n = split(line, w, /[[:space:]]+/); stage = ""; parent = ""; pkgs = ""
    for (i = 1; i <= n; i++) {
      if (toupper(w[i]) == "FROM") { j = i + 1; while (w[j] ~ /^--/) j++; parent = w[j] }
      if (toupper(w[i]) == "AS") stage = w[i + 1]
    }
    next
  }
  line ~ /apt-get[[:space:]]+install/ {
    n = split(line, w, /[[:space:]]+/); on = 0
    for (i = 1; i <= n; i++) {
      if (w[i] == "install" && w[i - 1] == "apt-get") { on = 1; continue }
      if (!on) continue
      if (w[i] == "&&" || w[i] == ";" || w[i] == "||") { on = 0; continue }
      if (w[i] ~ /^-/ || w[i] == "") continue
      pkgs = pkgs " " w[i]
    }
  }
  END { if (stage != "") print stage "\t" parent "\t" pkgs }
' "$dockerfile")


# packages a target installs: its own and those of the stages it is built on
target_pkgs() {
  local s=$1 out=""
  while [ -n "$s" ] && [ -n "${stage_pkgs[$s]+x}" ]; do
    out="$out ${stage_pkgs[$s]}"
    s=${stage_parent[$s]}
  done
  printf '%s\n' $out | sort -u
}
if [ -n "$only_packages" ]; then
  [ -n "${stage_pkgs[$only_packages]+x}" ] || { echo "runtime-packages: no stage $only_packages" >&2; exit 2; }
  target_pkgs "$only_packages" | grep -v '^$'
  exit 0
fi

for t in "${targets[@]}"; do
  if [ ! -x "$build/${binary[$t]}" ]; then
    echo "runtime-packages: $build/${binary[$t]} is missing (build it first)" >&2
    exit 2
  fi
done
for tool in ldd readelf dpkg dpkg-query; do
  command -v "$tool" >/dev/null || { echo "runtime-packages: $tool not found" >&2; exit 2; }
done

# --- libraries of each binary: "name path" per line (ldd resolves the search path)
declare -A libs_of needed_of
all_paths=()
for t in "${targets[@]}"; do
  bin="$build/${binary[$t]}"
  out=$(ldd "$bin") || { echo "runtime-packages: ldd $bin failed" >&2; exit 1; }
  if grep -q "not found" <<<"$out"; then
    echo "runtime-packages: $bin: $(grep 'not found' <<<"$out" | tr '\n' ' ')" >&2
    exit 1
  fi
  libs_of[$t]=$(awk '$2 == "=>" && $3 ~ /^\// {print $1, $3}' <<<"$out")
  needed_of[$t]=$(readelf -d "$bin" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
  while read -r _ path; do all_paths+=("$path"); done <<<"${libs_of[$t]}"
done

# --- owner package of each library path, in one dpkg -S call. /lib is a symlink to
# /usr/lib (merged /usr), and dpkg knows each file under the path its package ships, so
# ask for the path as ldd printed it, its real path and the /usr-toggled variants.
declare -A owner candidates
queries=()
for p in $(printf '%s\n' "${all_paths[@]}" | sort -u); do
  real=$(readlink -f "$p")
  c=("$p" "$real")
  for x in "$p" "$real"; do
    case "$x" in
      /usr/*) c+=("${x#/usr}") ;;
      *) c+=("/usr$x") ;;
    esac
  done
  candidates[$p]="${c[*]}"
  queries+=("${c[@]}")
done
declare -A pkg_of_file
while IFS= read -r line; do
  pkgs=${line%%: /*}
  file=${line#*: }
  pkgs=${pkgs//, / }
  first=${pkgs%% *}
  pkg_of_file[$file]=${first%%:*}
done < <(dpkg -S $(printf '%s\n' "${queries[@]}" | sort -u) 2>/dev/null | grep -v '^diversion')
for p in "${!candidates[@]}"; do
  for c in ${candidates[$p]}; do
    if [ -n "${pkg_of_file[$c]:-}" ]; then owner[$p]=${pkg_of_file[$c]}; break; fi
  done
  if [ -z "${owner[$p]:-}" ]; then
    echo "runtime-packages: no Debian package owns $p" >&2
    exit 1
  fi
done

# --- dependencies of the installed packages
declare -A depends
while IFS=$'\t' read -r name deps; do
  list=()
  IFS=',' read -ra groups <<<"$deps"
  for g in "${groups[@]}"; do
    # first installed alternative of "a (>= 1) | b:any"
    IFS='|' read -ra alts <<<"$g"
    for a in "${alts[@]}"; do
      a=$(sed -e 's/([^)]*)//g' -e 's/:any//' -e 's/[[:space:]]//g' <<<"$a")
      [ -n "$a" ] || continue
      if dpkg-query -W -f='${Status}' "$a" 2>/dev/null | grep -q "install ok installed"; then
        list+=("$a"); break
      fi
    done
  done
  depends[$name]="${list[*]}"
done < <(dpkg-query -W -f='${Package}\t${Pre-Depends}, ${Depends}\n' \
           $(printf '%s\n' "${owner[@]}" | sort -u) libc6 2>/dev/null)

# closure PKG... : the packages and everything they depend on (installed ones)
closure() {
  local -A seen=()
  local queue=("$@") p d
  while [ ${#queue[@]} -gt 0 ]; do
    p=${queue[0]}; queue=("${queue[@]:1}")
    [ -n "${seen[$p]:-}" ] && continue
    seen[$p]=1
    if [ -z "${depends[$p]+x}" ]; then
      local deps
      deps=$(dpkg-query -W -f='${Pre-Depends}, ${Depends}' "$p" 2>/dev/null \
        | tr ',' '\n' | sed -e 's/|.*//' -e 's/([^)]*)//g' -e 's/:any//' -e 's/[[:space:]]//g' \
        | grep -v '^$' | tr '\n' ' ')
      depends[$p]="$deps"
    fi
    for d in ${depends[$p]}; do queue+=("$d"); done
  done
  printf '%s\n' "${!seen[@]}"
}

in_list() { local x=$1; shift; local y; for y in "$@"; do [ "$x" = "$y" ] && return 0; done; return 1; }

failed=0
for t in "${targets[@]}"; do
  # packages of every loaded library, and of the directly linked ones
  declare -A lib_path=()
  while read -r name path; do lib_path[$name]=$path; done <<<"${libs_of[$t]}"
  used=$(while read -r _ path; do echo "${owner[$path]}"; done <<<"${libs_of[$t]}" | sort -u)
  direct=$(for n in ${needed_of[$t]}; do
             p=${lib_path[$n]:-}
             [ -n "$p" ] && echo "${owner[$p]}"
           done | sort -u)
  if [ "$print" = 1 ]; then
    echo "$t (${binary[$t]}):"
    echo "  direct:     $(grep -vxF -f <(printf '%s\n' "${base_pkgs[@]}") <<<"$direct" | tr '\n' ' ')"
    echo "  all loaded: $(tr '\n' ' ' <<<"$used")"
    continue
  fi
  if [ -z "${stage_pkgs[$t]+x}" ]; then
    echo "FAIL $t: no stage '$t' in $dockerfile"; failed=1; continue
  fi
  mapfile -t listed < <(target_pkgs "$t" | grep -v '^$')
  mapfile -t covered < <(closure "${listed[@]}" "${base_pkgs[@]}")
  problems=()
  for p in $direct; do
    in_list "$p" "${base_pkgs[@]}" && continue
    in_list "$p" "${listed[@]}" || problems+=("$p is linked directly but not installed by name")
  done
  for p in $used; do
    in_list "$p" "${covered[@]}" || problems+=("$p is loaded but neither installed nor a dependency of an installed package")
  done
  for p in "${listed[@]}"; do
    in_list "$p" $used "${allowed_extra[@]}" || problems+=("$p is installed but ${binary[$t]##*/} loads no library from it")
  done
  if [ ${#problems[@]} -eq 0 ]; then
    echo "ok   $t: ${#listed[@]} packages cover the $(wc -l <<<"${libs_of[$t]}") libraries of ${binary[$t]##*/}"
  else
    failed=1
    for m in "${problems[@]}"; do echo "FAIL $t: $m"; done
  fi
  unset lib_path
done
exit "$failed"
