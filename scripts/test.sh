#!/usr/bin/env bash
# One command that sets up a fresh Debian 12 machine and runs the whole
# test suite: C unit tests, Lua policy tests, end-to-end tests of the
# binary (MCP server, CLI, run) against a stub claude, integration tests
# against the real Claude Code CLI (installed from npm, run offline against
# a loopback Messages API mock), then the same suite under ASan+UBSan, and
# valgrind leak checks of MCP sessions and `run` scripts (the fault matrix,
# load, short soak and GC-stress pass run in both builds); last, a short bounded run of
# every libFuzzer harness (fuzz/, built with clang).
#
# It builds in its own directories (build-test/, build-test-asan/,
# build-test-fuzz/), never
# in build/ (which scripts/install.sh configures without tests), and fails
# unless every registered test ran and passed (scripts/ctest-all.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh --test
jobs=$(nproc)
# A test that changes a shared device (as a cleanup that chmods through a
# link once did to /dev/null) breaks every later unprivileged process:
# checked after each stage.
null_mode=$(stat -c %a /dev/null)
check_null() {
  if [[ "$(stat -c %a /dev/null)" != "$null_mode" ]]; then
    echo "test.sh: /dev/null changed mode during $1 ($null_mode -> $(stat -c %a /dev/null))" >&2
    exit 1
  fi
}

echo "== build and test (RelWithDebInfo)"
cmake -S . -B build-test -DCMAKE_BUILD_TYPE=RelWithDebInfo -DAD_TESTS=ON >/dev/null
cmake --build build-test -j"$jobs"
scripts/ctest-all.sh build-test --timeout 900 -j"$jobs"
check_null "the RelWithDebInfo tests"

echo "== build and test with AddressSanitizer + UndefinedBehaviorSanitizer"
cmake -S . -B build-test-asan -DCMAKE_BUILD_TYPE=Debug -DAD_SANITIZE=ON -DAD_TESTS=ON >/dev/null
cmake --build build-test-asan -j"$jobs"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  scripts/ctest-all.sh build-test-asan --timeout 900 -j"$jobs" -LE valgrind
check_null "the sanitizer tests"

echo "== fuzz harnesses (clang libFuzzer + ASan + UBSan, bounded runs)"
cmake -S . -B build-test-fuzz -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DAD_TESTS=OFF -DAD_FUZZ=ON >/dev/null
cmake --build build-test-fuzz -j"$jobs"
scripts/ctest-all.sh build-test-fuzz --timeout 300 -j"$jobs"
check_null "the fuzz runs"
echo "== all tests passed"
