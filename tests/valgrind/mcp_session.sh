#!/usr/bin/env bash
# Runs a whole MCP session (both eras, a real dispatch to the stub claude,
# malformed input, a cancelled call, EOF) under valgrind and fails on any
# memory error or leak. Usage: mcp_session.sh AGENT_DISPATCH_BIN STUB_DIR
set -euo pipefail
bin=$1 stub=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/proj"
cat > "$tmp/agents.yaml" <<YAML
agents:
  worker:
    directory: $tmp/proj
    description: test agent
YAML
export AGENT_DISPATCH_CONFIG=$tmp/agents.yaml AGENT_DISPATCH_JOBS_DIR=$tmp/jobs
export PATH="$stub:$PATH" HOME=$tmp
{
  echo '{"jsonrpc":"2.0","id":"p","method":"server/discover","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}'
  echo '{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"v","version":"1"}}}'
  echo '{"jsonrpc":"2.0","method":"notifications/initialized"}'
  echo '{"jsonrpc":"2.0","id":1,"method":"tools/list"}'
  echo 'not json at all'
  echo '{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"dispatch","arguments":{"agent":"worker","task":"hello [stub:progress=2]"},"_meta":{"progressToken":2}}}'
  echo '{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"dispatch_stream","arguments":{"agent":"worker","task":"[stub:progress=3]"},"_meta":{"progressToken":"t"}}}'
  echo '{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"dispatch","arguments":{"agent":"worker","task":"[stub:hang]"}}}'
  echo '{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"list_agents"}}'
  sleep 4
  echo '{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":4}}'
  echo '{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"dispatch","arguments":{"agent":"worker","task":"[stub:hang]"}}}'
  sleep 2
} | valgrind -q --leak-check=full --show-leak-kinds=definite,indirect \
      --errors-for-leak-kinds=definite,indirect --error-exitcode=99 \
      --trace-children=no "$bin" serve >"$tmp/out" 2>"$tmp/err" || {
  rc=$?
  cat "$tmp/err" >&2
  echo "valgrind run failed with status $rc" >&2
  exit 1
}
grep -q '"id":2,"result"' "$tmp/out" || { echo "dispatch got no result" >&2; cat "$tmp/out" "$tmp/err" >&2; exit 1; }
grep -q '"id":3,"result"' "$tmp/out" || { echo "dispatch_stream got no result" >&2; exit 1; }
if grep -q '"id":4,' "$tmp/out"; then echo "cancelled call was answered" >&2; exit 1; fi
echo "valgrind: clean"
