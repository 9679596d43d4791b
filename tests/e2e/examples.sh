#!/usr/bin/env bash
# Runs every example script against the stub claude with a temporary
# config of three agents in one group; each must exit 0 and print output.
set -euo pipefail
bin=$1 stub=$2 src=$3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/backend" "$tmp/web" "$tmp/infra"
cat > "$tmp/agents.yaml" <<YAML
agents:
  backend: {directory: $tmp/backend, description: api}
  web: {directory: $tmp/web, description: ui}
  infra: {directory: $tmp/infra, description: ops}
groups:
  shop:
    shared_context: prod is eu-west-1
    members: [{agent: backend}, {agent: web}]
YAML
export AGENT_DISPATCH_CONFIG=$tmp/agents.yaml AGENT_DISPATCH_JOBS_DIR=$tmp/jobs HOME=$tmp
export PATH="$stub:$PATH"
run() {
  echo "== $*"
  "$bin" run "$@" >"$tmp/out" 2>"$tmp/err" || { cat "$tmp/out" "$tmp/err"; echo "FAILED: $*"; exit 1; }
  [[ -s "$tmp/out" ]] || { cat "$tmp/err"; echo "no output: $*"; exit 1; }
}
run "$src/examples/review.lua" backend web
run "$src/examples/review.lua" --json
grep -q '"reviewed":3' "$tmp/out" || { cat "$tmp/out"; echo "review --json"; exit 1; }
STUB_REPLY="use /v2/orders [RESOLVED]" run "$src/examples/dialogue.lua" web backend "[stub:echo_env=STUB_REPLY] which endpoint?"
run "$src/examples/async_batch.lua" "list TODOs"
run "$src/examples/upgrade_sweep.lua" shop
mkdir -p "$tmp/lua/ad/domain" && cp "$src/examples/overrides/ad/domain/aggregate.lua" "$tmp/lua/ad/domain/"
run "$src/examples/review.lua" backend web
grep -q "release checklist" "$tmp/out" || { cat "$tmp/out"; echo "override not used"; exit 1; }
# The custom tool example, installed as a user would, called over MCP.
mkdir -p "$tmp/tools" && chmod 700 "$tmp/tools"
install -m 600 "$src/examples/tools/second_opinion.lua" "$tmp/tools/"
{ printf '%s\n' \
  '{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"x","version":"1"}}}' \
  '{"jsonrpc":"2.0","id":1,"method":"tools/list"}' \
  '{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"second_opinion","arguments":{"question":"[stub:echo_argv] is it up?","first":"backend","second":"infra"}}}'; sleep 5; } \
  | AGENT_DISPATCH_TOOLS_DIR=$tmp/tools "$bin" serve >"$tmp/out" 2>"$tmp/err" &
srv=$!
for _ in $(seq 100); do grep -q '"id":2,' "$tmp/out" && break; sleep 0.1; done
kill $srv 2>/dev/null || true
wait $srv 2>/dev/null || true
grep -q '"name":"second_opinion"' "$tmp/out" || { cat "$tmp/out" "$tmp/err"; echo "custom tool not listed"; exit 1; }
grep '"id":2,' "$tmp/out" | grep -q 'is it up.*is it up' || { cat "$tmp/err"; echo "custom tool did not ask both agents"; exit 1; }
grep '"id":2,' "$tmp/out" | grep -q '"isError":false' || { cat "$tmp/out" "$tmp/err"; echo "custom tool failed"; exit 1; }
echo "examples: ok"
