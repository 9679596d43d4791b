#!/usr/bin/env bash
# run.sh HARNESS WORKDIR SEED_CORPUS DICT|- [LIBFUZZER_ARGS...]: fuzzes for a
# bounded time from the seed corpus (read only; new inputs go to
# WORKDIR/corpus) and fails on any crash, leak, timeout or broken invariant
# (a reproducer is left in WORKDIR/ and printed, base64, at the end).
set -euo pipefail
harness=$1 work=$2 seeds=$3 dict=$4
shift 4
mkdir -p "$work/corpus"
# The harness's scratch files (fuzz/scratch.h): in memory when /dev/shm is
# there, and removed here, since a crashed harness runs no exit handler.
scratch=$(mktemp -d "$([[ -d /dev/shm && -w /dev/shm ]] && echo /dev/shm || echo "${TMPDIR:-/tmp}")/ad-fuzz-run-XXXXXX")
trap 'rm -rf "$scratch"' EXIT
export AD_FUZZ_SCRATCH=$scratch
args=(-timeout=20 -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$work/")
[[ "$dict" != "-" && -n "$dict" ]] && args+=(-dict="$dict")
rc=0
nice -n 19 "$harness" "${args[@]}" "$@" "$work/corpus" "$seeds" || rc=$?
if ((rc != 0)); then
  # The reproducer lives in a build tree that a CI machine throws away, and
  # a CI log is often shown by its first and last lines only: its text ends
  # the output, base64 on one line, so the failure can be replayed anywhere
  # (base64 -d > input; HARNESS input).
  for f in "$work"/crash-* "$work"/leak-* "$work"/timeout-* "$work"/oom-*; do
    [[ -f "$f" ]] || continue
    echo "fuzz: reproducer $(basename "$f") ($(stat -c %s "$f") bytes), base64:"
    base64 -w0 "$f"; echo
  done
fi
exit "$rc"
