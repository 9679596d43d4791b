#!/usr/bin/env bash
# Run the REAL Claude Code CLI offline against the loopback API mock.
#
#   tests/real/run-claude.sh [claude args...]
#   e.g. tests/real/run-claude.sh -p --output-format json -- "say hi [mock:reply=hi]"
#
# Environment (all optional):
#   CLAUDE_BIN        claude binary (default: output of tests/real/install-claude.sh,
#                     which installs the pinned CLI on first use)
#   MOCK_API_PORT     port of an already running mock (tests/mock_api/server.js)
#   ANTHROPIC_BASE_URL  used as is when set and MOCK_API_PORT is not
#                     If neither is set, a mock is started for this one run and
#                     stopped afterwards (its log goes to $MOCK_API_LOG if set).
#   CLAUDE_TEST_HOME  HOME for the CLI (sessions live there; share it between
#                     runs to use --resume). Default: a fresh temp dir, removed
#                     afterwards unless KEEP_HOME=1 (its path is printed on stderr).
#
# The CLI gets a scrubbed environment (env -i) holding only what it needs:
#   HOME, PATH, LANG, TERM, USER, SHELL, TMPDIR (inherited or defaults)
#   ANTHROPIC_BASE_URL=http://127.0.0.1:<port>   the mock
#   ANTHROPIC_API_KEY=sk-test                    any value works
#   CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1   no telemetry/update/feature-flag traffic
#   DISABLE_TELEMETRY=1, DISABLE_AUTOUPDATER=1, DISABLE_ERROR_REPORTING=1,
#   DISABLE_BUG_COMMAND=1                        belt and braces: no outbound traffic
#   CLAUDE_CODE_TMPDIR=$HOME/tmp                the CLI otherwise leaves a
#                     fswatch-probe-* dir per run in $TMPDIR/claude-<uid>/
# Scrubbing also drops variables of a surrounding Claude Code session
# (CLAUDECODE, CLAUDE_CODE_SESSION_ID, CLAUDE_CODE_ENTRYPOINT, ANTHROPIC_AUTH_TOKEN,
# ANTHROPIC_MODEL, CLAUDE_CODE_USE_BEDROCK/VERTEX, proxies, ...). No onboarding or
# .claude.json setup is needed for `-p`. Add variables with CLAUDE_EXTRA_ENV
# ("K=V K2=V2", whitespace separated, no quoting).
#
# With a given mock and CLAUDE_TEST_HOME the script execs the CLI (signals go
# straight to it); otherwise it runs it as a child, forwards TERM/INT/HUP and
# cleans up. The exit status is the CLI's.
#
# Node tests: tests/real/claude-harness.js does the same (startMock, claudeEnv,
# runClaude). Verified CLI behaviour: tests/real/FINDINGS.md.
set -uo pipefail

SCRIPT_DIR="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)"
MOCK_JS="$SCRIPT_DIR/../mock_api/server.js"

if [ -z "${CLAUDE_BIN:-}" ]; then
  CLAUDE_BIN="$("$SCRIPT_DIR/install-claude.sh")" || { echo "run-claude.sh: cannot install the claude CLI" >&2; exit 127; }
fi
[ -x "$CLAUDE_BIN" ] || { echo "run-claude.sh: CLAUDE_BIN '$CLAUDE_BIN' is not executable" >&2; exit 127; }

MOCK_PID=""
MOCK_DIR=""
FRESH_HOME=""
cleanup() {
  if [ -n "$MOCK_PID" ]; then kill "$MOCK_PID" 2>/dev/null; wait "$MOCK_PID" 2>/dev/null; fi
  [ -n "$MOCK_DIR" ] && rm -rf -- "$MOCK_DIR"
  if [ -n "$FRESH_HOME" ]; then
    if [ "${KEEP_HOME:-0}" = 1 ]; then echo "run-claude.sh: HOME kept at $FRESH_HOME" >&2
    else rm -rf -- "$FRESH_HOME"; fi
  fi
}

if [ -n "${MOCK_API_PORT:-}" ]; then
  BASE_URL="http://127.0.0.1:$MOCK_API_PORT"
elif [ -n "${ANTHROPIC_BASE_URL:-}" ]; then
  BASE_URL="$ANTHROPIC_BASE_URL"
else
  command -v node >/dev/null || { echo "run-claude.sh: node is needed to start the mock" >&2; exit 127; }
  MOCK_DIR="$(mktemp -d "${TMPDIR:-/tmp}/claude-mock.XXXXXX")"
  node "$MOCK_JS" --port-file "$MOCK_DIR/port" >"$MOCK_DIR/out" 2>&1 &
  MOCK_PID=$!
  for _ in $(seq 1 100); do [ -s "$MOCK_DIR/port" ] && break; sleep 0.05; done
  if [ ! -s "$MOCK_DIR/port" ]; then
    echo "run-claude.sh: mock did not start:" >&2; cat "$MOCK_DIR/out" >&2; cleanup; exit 1
  fi
  BASE_URL="http://127.0.0.1:$(cat "$MOCK_DIR/port")"
fi

if [ -n "${CLAUDE_TEST_HOME:-}" ]; then
  mkdir -p -- "$CLAUDE_TEST_HOME"
  RUN_HOME="$(cd -- "$CLAUDE_TEST_HOME" && pwd -P)"
else
  FRESH_HOME="$(mktemp -d "${TMPDIR:-/tmp}/claude-home.XXXXXX")"
  RUN_HOME="$FRESH_HOME"
fi

ENV=(
  HOME="$RUN_HOME"
  PATH="${PATH:-/usr/local/bin:/usr/bin:/bin}"
  LANG="${LANG:-C.UTF-8}"
  TERM="${TERM:-dumb}"
  USER="${USER:-$(id -un 2>/dev/null || echo user)}"
  SHELL="${SHELL:-/bin/bash}"
  TMPDIR="${TMPDIR:-/tmp}"
  ANTHROPIC_BASE_URL="$BASE_URL"
  ANTHROPIC_API_KEY=sk-test
  CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1
  DISABLE_TELEMETRY=1
  DISABLE_AUTOUPDATER=1
  DISABLE_ERROR_REPORTING=1
  DISABLE_BUG_COMMAND=1
  CLAUDE_CODE_TMPDIR="$RUN_HOME/tmp"
)
mkdir -p -- "$RUN_HOME/tmp"
# shellcheck disable=SC2206
[ -n "${CLAUDE_EXTRA_ENV:-}" ] && ENV+=( $CLAUDE_EXTRA_ENV )

if [ -z "$MOCK_PID" ] && [ -z "$FRESH_HOME" ]; then
  exec env -i "${ENV[@]}" "$CLAUDE_BIN" "$@"
fi

env -i "${ENV[@]}" "$CLAUDE_BIN" "$@" &
CHILD=$!
for sig in TERM INT HUP; do trap 'kill -'"$sig"' "$CHILD" 2>/dev/null' "$sig"; done
while :; do
  wait "$CHILD"; rc=$?
  # wait returns >128 when interrupted by a trapped signal; keep waiting for the child.
  kill -0 "$CHILD" 2>/dev/null || break
done
cleanup
exit "$rc"
