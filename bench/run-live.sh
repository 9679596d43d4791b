#!/usr/bin/env bash
# Live sessions and the warm pool against cold starts and --resume, with the
# real Claude Code CLI (tests/.cache/claude, installed on first use by
# tests/real/install-claude.sh) and the loopback API mock (bench/live.js).
#   bench/run-live.sh                 full run, writes bench/results-live.md
#   BENCH_QUICK=1 bench/run-live.sh   smoke run (5 pairs), prints the table only
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/build.sh"
AD_BIN="$build/agent-dispatch" exec node "$here/live.js"
