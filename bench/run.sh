#!/usr/bin/env bash
# agent-dispatch benchmarks: the one command.
#   bench/run.sh            full run (~1 min on 2 cores); prints the table and
#                           writes bench/results.md
#   BENCH_QUICK=1 bench/run.sh   a quick smoke run with 1/10 of the repetitions
# Builds the product if needed (cmake --build build) and the C helpers from
# their sources into build/bench/ (target bench-tools). Needs cmake, a C
# compiler and node (no npm packages).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/build.sh"
for exe in agent-dispatch stub/claude; do
  [ -x "$build/$exe" ] || { echo "bench: $build/$exe was not built" >&2; exit 1; }
done

cmake --build "$build" -j2 --target bench-tools >&2

AD_BENCH_BIN="$build/bench" exec node "$here/bench.js"
