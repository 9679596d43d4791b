#!/usr/bin/env bash
# campaign.sh BUILD_DIR RUNS_DIR EXECUTIONS HARNESS...: runs each harness
# in turn (one process at a time, through run.sh: one core, nice 19) for
# EXECUTIONS inputs from its seed corpus, with the options its CI test
# uses, and prints one row of docs/reliability.md's table per harness:
# executions, wall time, exec/s, cov, ft, corpus size, crashes. The log of
# each run is RUNS_DIR/<harness>/log; a crash stops the campaign with its
# reproducer in RUNS_DIR/<harness>/. FUZZ_MAX_SECONDS (default: none)
# caps each run's time.
set -euo pipefail
build=$1 runs=$2 execs=$3
shift 3
src=$(cd "$(dirname "$0")" && pwd)
for h in "$@"; do
  dict=- extra=()
  case $h in
    mcp|claude) dict=$src/json.dict ;;
    yaml|config) dict=$src/yaml.dict ;;
  esac
  case $h in
    mcp|claude|yaml|config) extra=(-detect_leaks=0) ;; # see fuzz/CMakeLists.txt
  esac
  [[ -n "${FUZZ_MAX_SECONDS:-}" ]] && extra+=(-max_total_time="$FUZZ_MAX_SECONDS")
  rm -rf "${runs:?}/$h"
  mkdir -p "$runs/$h"
  start=$(date +%s)
  rc=0
  ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    "$src/run.sh" "$build/fuzz/fuzz-$h" "$runs/$h" "$src/corpus/$h" "$dict" \
    -runs="$execs" "${extra[@]}" >"$runs/$h/log" 2>&1 || rc=$?
  wall=$(( $(date +%s) - start ))
  done_line=$(grep -a '^#[0-9].* cov: .* corp: ' "$runs/$h/log" | tail -1 || true)
  n=$(grep -a 'stat::number_of_executed_units' "$runs/$h/log" | awk '{print $2}' || true)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$done_line")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$done_line")
  corp=$(sed -n 's/.* corp: \([0-9]*\)\/.*/\1/p' <<<"$done_line")
  rate=$(( ${n:-0} / (wall > 0 ? wall : 1) ))
  printf '| `%s` | %s | %s | %s | %s | %s | %s | %s |\n' \
    "$h" "${n:-?}" "$wall" "$rate" "${cov:-?}" "${ft:-?}" "${corp:-?}" \
    "$([[ $rc -eq 0 ]] && echo 0 || echo "FAILED (exit $rc)")"
  [[ $rc -eq 0 ]] || exit "$rc"
done
