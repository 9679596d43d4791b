#!/usr/bin/env bash
# Self-test for the stub `claude` (stub_claude.c): runs it in a few modes and
# checks the output with grep.  Usage: stub_selftest.sh /path/to/claude
set -euo pipefail

STUB=${1:?usage: stub_selftest.sh /path/to/stub/claude}
SID=123e4567-e89b-42d3-a456-426614174000
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }
# expect FILE REGEX: FILE must contain a line matching the extended REGEX.
expect() { grep -Eq -- "$2" "$1" || { cat "$1" >&2; fail "$1 lacks /$2/"; }; }

# 1. json default: one result line with the task of a structured prompt.
"$STUB" -p --output-format json --session-id "$SID" -- \
  $'## Goal\nbe useful\n\n## Task\nsay hi [stub:cost=0.5]' >"$tmp/json" </dev/null
[ "$(wc -l <"$tmp/json")" -eq 1 ] || fail "json mode printed more than one line"
expect "$tmp/json" '^\{"type":"result","subtype":"success","is_error":false,"result":"stub ok: say hi"'
expect "$tmp/json" "\"session_id\":\"$SID\""
expect "$tmp/json" '"total_cost_usd":0\.5,'

# 2. stream-json with progress=2: init, 2 progress lines, reply, result.
"$STUB" -p --output-format stream-json --verbose -- "go [stub:progress=2] [stub:interval=0.01]" \
  >"$tmp/stream" </dev/null
[ "$(wc -l <"$tmp/stream")" -eq 5 ] || { cat "$tmp/stream" >&2; fail "stream: expected 5 lines"; }
expect "$tmp/stream" '^\{"type":"system","subtype":"init","session_id":"[0-9a-f-]{36}"'
expect "$tmp/stream" '"text":"progress 1/2"'
expect "$tmp/stream" '"text":"progress 2/2"'
expect "$tmp/stream" '"text":"stub ok: go"'
tail -n 1 "$tmp/stream" | grep -q '^{"type":"result","subtype":"success"' || fail "stream: result not last"

# stream-json without --verbose is rejected like the real CLI.
if "$STUB" -p --output-format stream-json -- x >/dev/null 2>"$tmp/err"; then
  fail "stream-json without --verbose succeeded"
fi
expect "$tmp/err" 'requires --verbose'

# 3. budget stop: error result on stdout, exit status 1.
rc=0
"$STUB" -p --output-format json --max-budget-usd 0.25 -- "[stub:budget]" >"$tmp/budget" || rc=$?
[ "$rc" -eq 1 ] || fail "budget: exit status $rc, want 1"
expect "$tmp/budget" '"subtype":"error_max_budget_usd","is_error":true,"result":null'
expect "$tmp/budget" 'Reached maximum budget \(\$0\.25\)'

# 4. old_cli rejects --session-id, but answers without it.
rc=0
"$STUB" -p --output-format json --session-id "$SID" -- "[stub:old_cli]" \
  >/dev/null 2>"$tmp/err" || rc=$?
[ "$rc" -eq 1 ] || fail "old_cli: exit status $rc, want 1"
expect "$tmp/err" "^error: unknown option '--session-id'"
"$STUB" -p --output-format json -- "x [stub:old_cli]" >"$tmp/old"
expect "$tmp/old" '"result":"stub ok: x"'

# 5. echo_argv: a prompt after `--` that looks like a flag stays the prompt.
"$STUB" -p --output-format json --model sonnet --allowedTools Read -- \
  "--output-format [stub:echo_argv]" >"$tmp/argv"
expect "$tmp/argv" '"result":"-p --output-format json --model sonnet --allowedTools Read -- --output-format \[stub:echo_argv\]"'

# Unknown options fail like the real CLI.
rc=0
"$STUB" -p --bogus -- x >/dev/null 2>"$tmp/err" || rc=$?
[ "$rc" -eq 1 ] || fail "unknown option: exit status $rc, want 1"
expect "$tmp/err" "^error: unknown option '--bogus'"

# die=1: killed by SIGKILL right after the first progress line, no result.
rc=0
"$STUB" -p --output-format stream-json --verbose -- "x [stub:progress=3] [stub:interval=0.01] [stub:die=1]" \
  >"$tmp/die" </dev/null || rc=$?
[ "$rc" -eq 137 ] || fail "die: exit status $rc, want 137 (SIGKILL)"
expect "$tmp/die" '"text":"progress 1/3"'
if grep -q '"type":"result"' "$tmp/die"; then fail "die: a result line was written"; fi

# Live mode (--input-format stream-json): one turn per user message, the
# session kept; an interrupt ends a turn as the CLI does; ask gets its answer.
LIVE="$STUB -p --input-format stream-json --output-format stream-json --verbose --permission-prompt-tool stdio"
{
  printf '%s\n' '{"type":"user","message":{"role":"user","content":"first [stub:sleep=0.2]"}}'
  printf '%s\n' '{"type":"user","message":{"role":"user","content":"second"}}'
  sleep 0.5
  printf '%s\n' '{"type":"user","message":{"role":"user","content":"long [stub:sleep=5]"}}'
  sleep 0.3
  printf '%s\n' '{"type":"control_request","request_id":"r1","request":{"subtype":"interrupt"}}'
  printf '%s\n' '{"type":"user","message":{"role":"user","content":"[stub:ask=Bash {\"command\":\"ls\"}]"}}'
  sleep 0.3
  printf '%s\n' '{"type":"control_response","response":{"subtype":"success","request_id":"stub-ask-1","response":{"behavior":"deny","message":"not now"}}}'
} | $LIVE >"$tmp/live"
expect "$tmp/live" '"result":"stub ok: first"'
expect "$tmp/live" '"result":"stub ok: first\\n\+ second"'
expect "$tmp/live" '"request_id":"r1","response":{"still_queued":\[\]}'
expect "$tmp/live" '"subtype":"error_during_execution".*"terminal_reason":"aborted_streaming"'
expect "$tmp/live" '"subtype":"can_use_tool","tool_name":"Bash"'
expect "$tmp/live" '"result":"asked Bash: deny message=not now"'
[ "$(grep -o '"session_id":"[^"]*"' "$tmp/live" | sort -u | wc -l)" -eq 1 ] || fail "live: one session id"

echo "stub_claude selftest: ok"
