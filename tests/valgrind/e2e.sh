#!/usr/bin/env bash
# Runs end-to-end test files with every agent-dispatch process under
# valgrind memcheck (AD_VALGRIND in tests/e2e/lib.js) and fails on any
# memory error or definitely lost block in any of them.
# Usage: e2e.sh AGENT_DISPATCH_BIN STUB_DIR [node --test options] TEST.js...
set -euo pipefail
bin=$1 stub=$2
shift 2
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
command -v valgrind >/dev/null || {
  echo "valgrind not found; install it (scripts/deps.sh --test, or apt-get install valgrind)" >&2
  exit 1
}
AD_BIN=$bin AD_STUB_DIR=$stub AD_VALGRIND=$logs node --test "$@"
n=$(find "$logs" -name 'vg.*.log' | wc -l)
bad=0
for f in "$logs"/vg.*.log; do
  [ -e "$f" ] || continue
  # With -q valgrind writes only errors and leak reports, and a warning
  # for each system call it does not know: pidfd_open (434) is one on
  # Debian 12's valgrind, which answers ENOSYS, and the program then
  # watches the job file alone (its documented fallback). Those warnings
  # are not errors; anything else in the log is.
  if grep -Ev -e '^--[0-9]+-- (WARNING: unhandled amd64-linux syscall: 434|You may be able to write your own handler\.|Read the file README_MISSING_SYSCALL_OR_IOCTL\.|Nevertheless we consider this a bug\.  Please report|it at http://valgrind\.org/support/bug_reports\.html\.)$' "$f" | grep -q .; then
    echo "== $f" >&2
    cat "$f" >&2
    bad=$((bad + 1))
  fi
done
[ "$n" -gt 0 ] || { echo "no process ran under valgrind" >&2; exit 1; }
[ "$bad" -eq 0 ] || { echo "valgrind: $bad of $n processes reported errors or leaks" >&2; exit 1; }
echo "valgrind: $n processes clean"
