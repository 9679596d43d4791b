#!/usr/bin/env bash
# run.sh HARNESS WORKDIR SEED_CORPUS DICT|- [LIBFUZZER_ARGS...]: fuzzes for a
# bounded time from the seed corpus (read only; new inputs go to
# WORKDIR/corpus) and fails on any crash, leak, timeout or broken invariant
# (a reproducer is left in WORKDIR/).
set -euo pipefail
harness=$1 work=$2 seeds=$3 dict=$4
shift 4
mkdir -p "$work/corpus"
args=(-timeout=20 -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$work/")
[[ "$dict" != "-" && -n "$dict" ]] && args+=(-dict="$dict")
exec nice -n 19 "$harness" "${args[@]}" "$@" "$work/corpus" "$seeds"
