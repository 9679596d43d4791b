#!/usr/bin/env bash
# ctest-all.sh BUILD_DIR [CTEST_ARGS...]: runs ctest in BUILD_DIR and fails
# unless every test that ctest lists (with the same selection arguments)
# ran and passed: no tests at all, fewer tests run than listed, or a
# skipped test is a failure, never a silent success.
set -uo pipefail
dir=$1
shift
cd "$dir" || exit 1
listed=$(ctest -N "$@" | sed -n 's/^Total Tests: \([0-9]*\)$/\1/p')
if [[ -z "$listed" || "$listed" -eq 0 ]]; then
  echo "ctest-all: no tests are registered in $dir (configured with -DAD_TESTS=OFF?)" >&2
  exit 1
fi
log=$(mktemp)
trap 'rm -f "$log"' EXIT
ctest --output-on-failure "$@" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
ran=$(sed -n 's/.*tests passed, [0-9]* tests\{0,1\} failed out of \([0-9]*\)$/\1/p' "$log" | tail -1)
skipped=$(grep -c -- '\*\*\*Skipped\|Not Run' "$log")
if ((rc != 0)); then
  exit "$rc"
fi
if [[ "$ran" != "$listed" ]]; then
  echo "ctest-all: $listed tests are registered but ${ran:-none} ran" >&2
  exit 1
fi
if ((skipped > 0)); then
  echo "ctest-all: $skipped tests were skipped or not run" >&2
  exit 1
fi
echo "ctest-all: all $listed tests ran and passed"
