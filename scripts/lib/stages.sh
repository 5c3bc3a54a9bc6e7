# Stage runner for scripts: runs named stages, times them, remembers what failed and prints
# a summary. Source it, then:
#   stage NAME CMD ARGS...      run CMD, recording its time and status
#   skip_stage NAME REASON      record a stage that was not run
#   stages_summary              print the table; returns non-zero if any stage failed
# shellcheck shell=bash

_stage_names=()
_stage_results=()
_stage_secs=()
STAGES_FAILED=0

_fmt_secs() {
  local s=$1
  if [ "$s" -ge 60 ]; then printf '%dm%02ds' $((s / 60)) $((s % 60)); else printf '%ds' "$s"; fi
}

stage() {
  local name=$1
  shift
  local start end status
  printf '\n===== [%s] %s\n' "$name" "$*"
  start=$(date +%s)
  "$@"
  status=$?
  end=$(date +%s)
  _stage_names+=("$name")
  _stage_secs+=($((end - start)))
  if [ "$status" -eq 0 ]; then
    _stage_results+=("ok")
    printf '===== [%s] ok in %s\n' "$name" "$(_fmt_secs $((end - start)))"
  else
    _stage_results+=("FAILED (exit $status)")
    STAGES_FAILED=$((STAGES_FAILED + 1))
    printf '===== [%s] FAILED (exit %d) after %s\n' "$name" "$status" "$(_fmt_secs $((end - start)))"
  fi
  return "$status"
}

skip_stage() {
  _stage_names+=("$1")
  _stage_secs+=(0)
  _stage_results+=("skipped: $2")
  printf '\n===== [%s] skipped: %s\n' "$1" "$2"
}

stages_summary() {
  local i total=0
  printf '\n===== summary\n'
  for i in "${!_stage_names[@]}"; do
    printf '  %-14s %8s  %s\n' "${_stage_names[$i]}" "$(_fmt_secs "${_stage_secs[$i]}")" "${_stage_results[$i]}"
    total=$((total + _stage_secs[i]))
  done
  printf '  %-14s %8s\n' "total" "$(_fmt_secs "$total")"
  [ "$STAGES_FAILED" -eq 0 ]
}
