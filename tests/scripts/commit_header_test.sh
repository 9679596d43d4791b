#!/usr/bin/env bash
# cmake/commit.cmake (run at every build) names the checkout's HEAD in the
# header --version prints, follows a new commit without a new configure,
# leaves the header untouched (no rebuild) while HEAD stays, and says
# "unknown" outside a checkout.
set -u
script=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
run() { cmake -DSRC="$1" -DOUT="$tmp/h" -DGIT="$(command -v git)" -P "$script"; }
check() { # check WHAT EXPECTED_COMMIT
  local want="#define AD_COMMIT \"$2\""
  if [[ "$(cat "$tmp/h")" == "$want" ]]; then echo "ok: $1"; else
    echo "FAIL: $1: got '$(cat "$tmp/h")', want '$want'"; fail=1; fi
}
git init -q "$tmp/repo"
g() { git -C "$tmp/repo" -c user.name=t -c user.email=t@t "$@"; }
g commit -q --allow-empty -m one
run "$tmp/repo"; check "first build names HEAD" "$(g rev-parse --short=12 HEAD)"
touch -d '2000-01-01' "$tmp/h"
run "$tmp/repo"
if [[ $(stat -c %Y "$tmp/h") == $(date -d '2000-01-01' +%s) ]]; then echo "ok: unchanged HEAD leaves the header alone"
else echo "FAIL: the header was rewritten with HEAD unchanged (every build would recompile)"; fail=1; fi
g commit -q --allow-empty -m two
run "$tmp/repo"; check "a new commit is named without a new configure" "$(g rev-parse --short=12 HEAD)"
mkdir "$tmp/plain"
run "$tmp/plain"; check "outside a checkout" unknown
exit $fail
