# Sourced by the valgrind scripts: a private HOME in a fresh temporary
# directory ($tmp, removed on exit) with one agent, worker, whose project
# is $tmp/proj, the stub claude first on PATH ($stub), and none of the
# caller's Lua overrides. $extra_yaml: more agents.yaml text (settings).
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/proj"
cat > "$tmp/agents.yaml" <<YAML
agents:
  worker:
    directory: $tmp/proj
    description: test agent
${extra_yaml:-}
YAML
export AGENT_DISPATCH_CONFIG=$tmp/agents.yaml AGENT_DISPATCH_JOBS_DIR=$tmp/jobs
export PATH="$stub:$PATH" HOME=$tmp
unset AGENT_DISPATCH_LUA_DIR AGENT_DISPATCH_USER_LUA_DIR AGENT_DISPATCH_DEPTH
