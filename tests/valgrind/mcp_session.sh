#!/usr/bin/env bash
# Runs a whole MCP session (both eras, a real dispatch to the stub claude,
# malformed input, a cancelled call, EOF) under valgrind and fails on any
# memory error or leak. Usage: mcp_session.sh AGENT_DISPATCH_BIN STUB_DIR
set -euo pipefail
bin=$1 stub=$2
. "$(dirname "$0")/session_env.sh"
export STUB_CLAUDE_LOG=$tmp/stub.log
mkfifo "$tmp/in"
valgrind -q --leak-check=full --show-leak-kinds=definite,indirect \
  --errors-for-leak-kinds=definite,indirect --error-exitcode=99 \
  --trace-children=no "$bin" serve <"$tmp/in" >"$tmp/out" 2>"$tmp/err" &
vg=$!
exec 3>"$tmp/in"
send() { printf '%s\n' "$1" >&3; }
# Each step waits for what it needs to see (a fixed sleep is too short on
# a loaded machine, and wasted time on a quiet one).
until_seen() {
  local what=$1; shift
  for ((i = 0; i < 2400; i++)); do
    if "$@"; then return 0; fi
    kill -0 "$vg" 2>/dev/null || break
    sleep 0.1
  done
  echo "timed out waiting for $what" >&2
  cat "$tmp/out" "$tmp/err" >&2
  exit 1
}
answered() { grep -q "\"id\":$1,\"result\"" "$tmp/out"; }
hangs() { [[ -f $tmp/stub.log ]] && (($(grep -c 'stub:hang' "$tmp/stub.log") >= $1)); }
send '{"jsonrpc":"2.0","id":"p","method":"server/discover","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}'
send '{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"v","version":"1"}}}'
send '{"jsonrpc":"2.0","method":"notifications/initialized"}'
send '{"jsonrpc":"2.0","id":1,"method":"tools/list"}'
send 'not json at all'
send '{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"dispatch","arguments":{"agent":"worker","task":"hello [stub:progress=2]"},"_meta":{"progressToken":2}}}'
send '{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"dispatch_stream","arguments":{"agent":"worker","task":"[stub:progress=3]"},"_meta":{"progressToken":"t"}}}'
send '{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"dispatch","arguments":{"agent":"worker","task":"[stub:hang]"}}}'
send '{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"list_agents"}}'
# The cancel reaches a call whose child runs; a second hanging call is
# still running at EOF.
until_seen "dispatch (id 2)" answered 2
until_seen "dispatch_stream (id 3)" answered 3
until_seen "list_agents (id 5)" answered 5
until_seen "the hanging child of id 4" hangs 1
send '{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":4}}'
send '{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"dispatch","arguments":{"agent":"worker","task":"[stub:hang]"}}}'
until_seen "the hanging child of id 6" hangs 2
exec 3>&-
rc=0
wait "$vg" || rc=$?
if ((rc != 0)); then
  cat "$tmp/err" >&2
  echo "valgrind run failed with status $rc" >&2
  exit 1
fi
grep -q '"id":2,"result"' "$tmp/out" || { echo "dispatch got no result" >&2; cat "$tmp/out" "$tmp/err" >&2; exit 1; }
grep -q '"id":3,"result"' "$tmp/out" || { echo "dispatch_stream got no result" >&2; exit 1; }
if grep -q '"id":4,' "$tmp/out"; then echo "cancelled call was answered" >&2; exit 1; fi
echo "valgrind: clean"
