#!/usr/bin/env bash
# One command that sets up a fresh Debian 12 machine and runs the whole
# test suite: C unit tests, Lua policy tests, end-to-end tests of the
# binary (MCP server, CLI, run) against a stub claude, integration tests
# against the real Claude Code CLI (installed from npm, run offline against
# a loopback Messages API mock), then the same suite under ASan+UBSan, and
# a valgrind leak check of an MCP session.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh --test
jobs=$(nproc)

echo "== build and test (RelWithDebInfo)"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$jobs"
(cd build && ctest --output-on-failure --timeout 900)

echo "== build and test with AddressSanitizer + UndefinedBehaviorSanitizer"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DAD_SANITIZE=ON >/dev/null
cmake --build build-asan -j"$jobs"
(cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --output-on-failure --timeout 900 -LE valgrind)
echo "== all tests passed"
