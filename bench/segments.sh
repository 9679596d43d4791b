#!/usr/bin/env bash
# bench/segments.sh BIN STUB_DIR [N]   (e.g. build/agent-dispatch build/stub)
# Where the server's machine instructions go along ONE dispatch (the critical path a client waits on), counted with
# callgrind and split at: on_read (a stdin read: the request line),
# proc_spawn, line_cb (a child stdout line), on_done (the child's exit
# handled), l_stdout_write (a line to the client: log notification or reply).
# Prints, for the last of N+1 sequential `tools/call dispatch` calls, each
# segment as "FROM -> TO  Ir". Pre-spawn = on_read -> ... -> proc_spawn;
# post-result = the last line_cb -> ... -> the reply's l_stdout_write.
# Instructions are of the server process only (not the keeper, not the child).
set -euo pipefail
bin=$(realpath "$1") stub=$(realpath "$2") N=${3:-8}
out=$(mktemp -d)
extra_yaml='settings:
  cache: {enabled: false}'
repo=$(cd "$(dirname "$0")/.." && pwd)
. "$repo/tests/valgrind/session_env.sh"
# AD_LUA_DIR: Lua modules to use instead of the embedded ones (a variant to
# compare, e.g. one with a module stubbed out).
[[ -n ${AD_LUA_DIR:-} ]] && export AGENT_DISPATCH_LUA_DIR=$AD_LUA_DIR
INIT='{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"b","version":"1"}}}'
call() { printf '{"jsonrpc":"2.0","id":%s,"method":"tools/call","params":{"name":"dispatch","arguments":{"agent":"worker","task":"hi","caller":"t","goal":"g"}}}\n' "$1"; }
coproc SRV { valgrind --tool=callgrind --callgrind-out-file="$out/cg" \
  --dump-before=on_read --dump-before=proc_spawn --dump-before=line_cb \
  --dump-before=on_done --dump-before=l_stdout_write "$bin" serve 2>"$out/err"; }
printf '%s\n' "$INIT" >&"${SRV[1]}"
read -r line <&"${SRV[0]}"
for ((i = 0; i <= N; i++)); do
  [[ $i == "$N" ]] && { sleep 0.3; touch "$out/mark"; }
  call $((10 + i)) >&"${SRV[1]}"
  while read -r line <&"${SRV[0]}"; do case $line in *'"id":'$((10 + i))','*) break ;; esac; done
  [[ $i == "$N" ]] && sleep 0.3
done
case $line in *'stub ok: hi'*) ;; *) echo "unexpected answer: $line" >&2; exit 1 ;; esac
exec {SRV[1]}>&-
wait "$SRV_PID" || true
# the dumps of the last dispatch: files written after the mark
prev=start
for f in $(ls -v "$out"/cg.*); do
  [[ $f -nt "$out/mark" ]] || { prev=$(sed -n 's/^desc: Trigger: --dump-before=//p' "$f"); continue; }
  t=$(sed -n 's/^desc: Trigger: --dump-before=//p' "$f"); [[ -z $t ]] && t=exit
  printf '%-16s -> %-16s %8s   %s\n' "$prev" "$t" "$(sed -n 's/^summary: //p' "$f")" "$f"
  prev=$t
done
echo "(callgrind files kept in $out: callgrind_annotate --inclusive=yes FILE)"
