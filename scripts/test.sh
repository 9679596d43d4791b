#!/usr/bin/env bash
# One command that sets up a fresh Debian 12 machine and runs the whole
# test suite: C unit tests, Lua policy tests, end-to-end tests of the
# binary (MCP server, CLI, run) against a stub claude, integration tests
# against the real Claude Code CLI (installed from npm, run offline against
# a loopback Messages API mock), then the same suite under ASan+UBSan, and
# valgrind leak checks of MCP sessions and `run` scripts (the fault matrix,
# load, short soak and GC-stress pass run in both builds); beside the
# sanitized stage, a short bounded run of every libFuzzer harness (fuzz/,
# built with clang).
#
# It builds in its own directories (build-test/, build-test-asan/,
# build-test-fuzz/, and build-test-release/ for the build scripts/install.sh
# makes), never
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

# The suite mostly waits on timed behaviour (about a quarter of the CPU is
# used at one test a core), so ctest runs twice as many entries as there
# are cores. Each stage runs in two passes: the entries without a wall-time
# bound (with tests/ctest-resources.json keeping the CPU-heavy ones, such
# as valgrind, GC stress, soak, load and the 1000 config edits, to two at
# a time), then the entries with one (label time_bound), so that no bound
# is measured beside a heavy entry (tests/CMakeLists.txt).
test_jobs=${AD_TEST_JOBS:-$((jobs * 2))}
resources=(--resource-spec-file "$PWD/tests/ctest-resources.json")
untimed() { # BUILD_DIR [LABELS_LEFT_OUT]: the first pass, checked by ctest-all.sh
  scripts/ctest-all.sh "$1" --timeout 900 -j"$test_jobs" "${resources[@]}" -LE "${2:+$2|}time_bound"
}
timed() { # BUILD_DIR [LABELS_LEFT_OUT]: the second pass
  scripts/ctest-all.sh "$1" --timeout 900 -j"$test_jobs" -L time_bound ${2:+-LE "$2"}
}

# Work started in the background (the later trees' builds, the fuzz runs) at
# the lowest priority, so that the tests it runs beside keep the CPU; it is
# stopped with the script, and its log is shown when it fails. It runs in a
# session of its own (so that it can be stopped as a group), and where the
# kernel groups the scheduling by session (autogroup), a nice value counts
# only within the session: a session with nothing else to run would still
# get as much CPU as all the tests together. Its session's own nice value
# (/proc/self/autogroup) is set to 19 as well.
bg_pids=()
trap 'for p in "${bg_pids[@]}"; do kill -- "-$p" 2>/dev/null || true; done' EXIT
background() { # LOG COMMAND...: runs COMMAND at nice 19 in a session of its own
  local log=$1
  shift
  setsid -w nice -n 19 bash -c '
    if [[ -w /proc/self/autogroup ]]; then echo 19 >/proc/self/autogroup; fi
    exec "$@"' _ "$@" >"$log" 2>&1 &
  bg_pids+=($!)
}
finish() { # PID LOG WHAT: waits for background work, fails with its log
  local rc=0
  wait "$1" || rc=$?
  # Reaped: its group id may be reused, so the exit trap must not kill it.
  local p left=()
  for p in "${bg_pids[@]}"; do [[ "$p" == "$1" ]] || left+=("$p"); done
  bg_pids=("${left[@]}")
  if [[ $rc -ne 0 ]]; then
    cat "$2" >&2
    echo "test.sh: $3 failed" >&2
    exit 1
  fi
}

echo "== build (RelWithDebInfo)"
cmake -S . -B build-test -DCMAKE_BUILD_TYPE=RelWithDebInfo -DAD_TESTS=ON >/dev/null
cmake --build build-test -j"$jobs"

# The sanitizer and fuzz trees, and the build scripts/install.sh makes
# (Release), build while the first stage's tests run.
background build-test/later-trees.log bash -c '
  set -e
  scripts/build-release.sh build-test-release "$1"
  cmake -S . -B build-test-asan -DCMAKE_BUILD_TYPE=Debug -DAD_SANITIZE=ON -DAD_TESTS=ON >/dev/null
  cmake --build build-test-asan -j"$1"
  cmake -S . -B build-test-fuzz -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DAD_TESTS=OFF -DAD_FUZZ=ON >/dev/null
  cmake --build build-test-fuzz -j"$1"' _ "$jobs"
builds=$!

echo "== test (RelWithDebInfo)"
untimed build-test
# (the bounds are measured with the builds done, as with nothing else)
echo "== build as installed (Release), with AddressSanitizer + UndefinedBehaviorSanitizer, and the fuzz harnesses (clang)"
finish "$builds" build-test/later-trees.log "building build-test-asan and build-test-fuzz"
cat build-test/later-trees.log
echo "== test (RelWithDebInfo): entries with a wall-time bound"
timed build-test
check_null "the RelWithDebInfo tests"

# The bounded fuzz runs (clang libFuzzer + ASan + UBSan; each a fixed wall
# time) run beside the first pass of the sanitized tests, one at a time at
# the lowest priority, and end before the second pass starts.
background build-test/fuzz-runs.log scripts/ctest-all.sh build-test-fuzz --timeout 300 -j1
fuzz=$!

echo "== test with AddressSanitizer + UndefinedBehaviorSanitizer"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
untimed build-test-asan valgrind
echo "== fuzz harnesses (bounded runs, beside the sanitized tests)"
finish "$fuzz" build-test/fuzz-runs.log "the fuzz runs"
cat build-test/fuzz-runs.log
check_null "the fuzz runs"
echo "== test with AddressSanitizer + UndefinedBehaviorSanitizer: entries with a wall-time bound"
timed build-test-asan valgrind
check_null "the sanitizer tests"
echo "== all tests passed"
