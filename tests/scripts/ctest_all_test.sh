#!/usr/bin/env bash
# scripts/ctest-all.sh fails when no test is registered, when a test is
# skipped, and when a test fails; it passes only when every listed test ran
# and passed.
set -u
script=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
expect() { # expect STATUS DIR WHAT
  "$script" "$2" >"$tmp/out" 2>&1
  local rc=$?
  if { [[ $1 == ok ]] && ((rc != 0)); } || { [[ $1 == fail ]] && ((rc == 0)); }; then
    echo "FAIL: $3 (exit $rc):"; sed 's/^/    /' "$tmp/out"; fail=1
  else
    echo "ok: $3"
  fi
}
mkdir -p "$tmp/none" "$tmp/good" "$tmp/skip" "$tmp/bad"
: >"$tmp/none/CTestTestfile.cmake"
cat >"$tmp/good/CTestTestfile.cmake" <<'T'
add_test(a "true")
add_test(b "true")
T
cat >"$tmp/skip/CTestTestfile.cmake" <<'T'
add_test(a "true")
add_test(b "sh" "-c" "exit 77")
set_tests_properties(b PROPERTIES SKIP_RETURN_CODE 77)
T
cat >"$tmp/bad/CTestTestfile.cmake" <<'T'
add_test(a "true")
add_test(b "false")
T
expect fail "$tmp/none" "a build directory without tests fails"
expect ok "$tmp/good" "every test ran and passed"
expect fail "$tmp/skip" "a skipped test fails the run"
expect fail "$tmp/bad" "a failed test fails the run"
exit $fail
