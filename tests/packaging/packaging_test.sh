#!/usr/bin/env bash
# Packaging: --version, the man pages (generated from the --help specs),
# bash/zsh/fish completions (commands, options, agent/group/job names),
# and the .deb (cpack -G DEB: dependencies, extracted and installed runs,
# uninstall). Runs as root (dpkg -i / dpkg -r), as CI does.
#   packaging_test.sh BINARY BUILD_DIR SOURCE_DIR SANITIZED(ON|OFF)
set -uo pipefail
bin=$1 build=$2 src=$3 sanitized=$4
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0
ok() { echo "ok: $*"; }
bad() { echo "FAIL: $*"; fails=$((fails + 1)); }
check() { local what=$1; shift; if "$@"; then ok "$what"; else bad "$what"; fi; }
export HOME=$tmp/home AGENT_DISPATCH_CONFIG=$tmp/home/cfg/agents.yaml \
  AGENT_DISPATCH_JOBS_DIR=$tmp/home/cfg/jobs
unset AGENT_DISPATCH_LUA_DIR AGENT_DISPATCH_USER_LUA_DIR AGENT_DISPATCH_CLAUDE
mkdir -p "$HOME/cfg" "$tmp/p/alpha" "$tmp/p/beta"
cat >"$AGENT_DISPATCH_CONFIG" <<Y
agents:
  alpha:
    directory: $tmp/p/alpha
  beta:
    directory: $tmp/p/beta
groups:
  team:
    members:
      - agent: alpha
Y
chmod 600 "$AGENT_DISPATCH_CONFIG"
mkdir -m 700 "$AGENT_DISPATCH_JOBS_DIR"
jid=0123456789abcdef0123456789abcdef
printf '{"id":"%s","agent":"alpha","task":"t","status":"done","created_at":1,"completed_at":2}' \
  "$jid" >"$AGENT_DISPATCH_JOBS_DIR/$jid.json"

# --version: version, commit, linked library versions.
v=$("$bin" --version)
check "--version names version, commit, Lua, libuv and libyaml" \
  grep -Eqz '^agent-dispatch [0-9]+\.[0-9]+\.[0-9]+
commit ([0-9a-f]{7,}|unknown)
Lua 5\.4\.[0-9]+, libuv [0-9.]+, libyaml [0-9.]+
$' <<<"$v"

# The man page has every command and every option --help lists.
page=$(MANWIDTH=200 man -l "$build/agent-dispatch.1" 2>/dev/null)
cmds=$("$bin" --help | sed -n '/^Commands:/,/^$/p' | awk 'NF>1 {print $1}')
missing=""
for c in $cmds; do
  grep -q "^   $c\$" <<<"$page" || missing+=" $c"
  helps=$("$bin" $c --help 2>/dev/null)
  [[ $c == group ]] && helps=$(for s in add list inspect update remove; do "$bin" group $s --help; done)
  for o in $(grep -Eo '^  --[a-z-]+' <<<"$helps"); do
    grep -q -- "$o" <<<"$page" || missing+=" $c:$o"
  done
done
check "man page has every command and option of --help${missing:+ (missing:$missing)}" test -z "$missing"
check "agent-dispatch-lua(7) renders the Lua API" \
  grep -q "ad.dispatch" <(man -l "$build/agent-dispatch-lua.7" 2>/dev/null)

# Completions, from an installed tree (they find names.lua next to the binary).
DESTDIR= cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
export PATH=$tmp/prefix/bin:$PATH
comp() { # comp WORDS... (last may be empty): prints COMPREPLY
  bash -c 'source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _agent_dispatch
           printf "%s\n" "${COMPREPLY[@]}"' _ "$tmp/prefix/share/bash-completion/completions/agent-dispatch" "$@"
}
check "bash completes commands (doctor)" grep -qx doctor <(comp agent-dispatch do)
check "bash completes agent names" test "$(comp agent-dispatch describe "" | grep -v '^-' | sort | tr '\n' ' ')" = "alpha beta "
check "bash completes options" grep -qx -- --timeout <(comp agent-dispatch test alpha --ti)
check "bash completes group names" grep -qx team <(comp agent-dispatch group inspect "")
check "bash completes --member with agents" grep -qx beta <(comp agent-dispatch group add x --member "")
check "bash completes job ids" grep -qx "$jid" <(comp agent-dispatch job "")
check "bash completes job ids for wait" grep -qx "$jid" <(comp agent-dispatch wait "")
for c in steer approve deny; do
  check "bash completes job ids for $c" grep -qx "$jid" <(comp agent-dispatch $c "")
done
check "the man page gives the exit status of wait (124: timeout)" grep -q "124" <<<"$page"
check "zsh completion parses" zsh -n "$tmp/prefix/share/zsh/vendor-completions/_agent-dispatch"
fishc="$tmp/prefix/share/fish/vendor_completions.d/agent-dispatch.fish"
check "fish completion parses" fish -n "$fishc"
check "fish completes agent names" grep -qx alpha \
  <(fish -c "source $fishc; complete -C 'agent-dispatch describe '" | cut -f1)

# The .deb: dependencies, extracted run, install, uninstall.
(cd "$build" && cpack -G DEB -B "$tmp/deb" >/dev/null 2>&1) || bad "cpack -G DEB"
deb=$(ls "$tmp"/deb/agent-dispatch_*.deb 2>/dev/null | head -1)
check "cpack -G DEB builds a .deb" test -f "$deb"
if [[ $sanitized != ON ]]; then
  deps=$(dpkg-deb -f "$deb" Depends)
  # libcrypto is loaded at run time (dlopen) for MRTR's requestState MAC.
  check "the .deb depends on libc (static link) and libssl3 only: '$deps'" \
    grep -Eqx '(libssl3, libc6 \(>= [0-9.]+\)|libc6 \(>= [0-9.]+\), libssl3)' <<<"$deps"
fi
dpkg-deb -x "$deb" "$tmp/root"
check "extracted binary runs --version" grep -q '^agent-dispatch ' <("$tmp/root/usr/bin/agent-dispatch" --version)
check "extracted binary runs doctor" grep -q '^Summary' <("$tmp/root/usr/bin/agent-dispatch" doctor)
check "extracted man page renders" grep -q 'COMMANDS' <(man -l "$tmp/root/usr/share/man/man1/agent-dispatch.1" 2>/dev/null)
exec 9>/tmp/agent-dispatch-deb-test.lock
flock 9
if dpkg-query -W -f='${Status}' agent-dispatch 2>/dev/null | grep -q "install ok installed"; then
  bad "agent-dispatch is already installed as a package on this machine: not replacing it"
else
  dpkg -i "$deb" >/dev/null || bad "dpkg -i"
  check "installed /usr/bin/agent-dispatch runs" grep -q '^agent-dispatch ' <(/usr/bin/agent-dispatch --version)
  check "man agent-dispatch finds the installed page" grep -q 'COMMANDS' <(man agent-dispatch 2>/dev/null)
  dpkg -r agent-dispatch >/dev/null || bad "dpkg -r"
  check "dpkg -r removes the binary" test ! -e /usr/bin/agent-dispatch
fi
exit $((fails > 0))
