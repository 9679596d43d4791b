#!/usr/bin/env bash
# The trace pictures parse and hold the tree: for the fan-out fixture and
# generated traces of 1, 20 and 200 spans, the SVG and the HTML page parse
# (xmllint as XML, and the page also with the HTML parser), hold one bar
# (rect class="span") per span with exactly the trace's span ids, and
# every bar sits in the group of its parent's bar.
# Usage: trace_view_xml.sh AGENT_DISPATCH_BINARY SOURCE_DIR
set -u
bin=$1
src=$2
if ! command -v xmllint >/dev/null 2>&1; then
  echo "trace_view_xml: xmllint not found; install libxml2-utils (scripts/deps.sh --test)" >&2
  exit 1
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$bin" run "$src/tests/lua/trace/render.lua" "$tmp" || { echo "FAIL: render"; exit 1; }
fail=0
check() { # check WHAT GOT WANT
  if [[ "$2" == "$3" ]]; then echo "ok: $1"; else echo "FAIL: $1: got '$2', want '$3'"; fail=1; fi
}
xp() { xmllint --xpath "$2" "$1" 2>/dev/null; }
BAR="//*[local-name()='rect'][@class='span']"
NODE="//*[local-name()='g'][@class='node']"
for name in fanout gen1 gen20 gen200; do
  want=$(wc -l <"$tmp/$name.ids")
  for ext in svg html; do
    f="$tmp/$name.$ext"
    err=$(xmllint --noout "$f" 2>&1)
    check "$name.$ext parses as XML" "$err" ""
    check "$name.$ext: one bar per span" "$(xp "$f" "count($BAR)")" "$want"
    check "$name.$ext: one group per span" "$(xp "$f" "count($NODE)")" "$want"
    got=$(xp "$f" "$BAR/@data-span-id" | sed -E 's/^ *data-span-id="([^"]*)"$/\1/' | sort)
    check "$name.$ext: the bars are the trace's spans" "$got" "$(sort "$tmp/$name.ids")"
    check "$name.$ext: each bar in its own span's group" \
      "$(xp "$f" "count($BAR[not(../@data-span-id = @data-span-id)])")" 0
    check "$name.$ext: each bar in its parent's group" \
      "$(xp "$f" "count($BAR[@data-parent-id != ''][not(@data-orphan)][not(../../@data-span-id = @data-parent-id)])")" 0
    check "$name.$ext: roots at the top level" \
      "$(xp "$f" "count($BAR[@data-parent-id = ''][../../@class = 'node'])")" 0
    check "$name.$ext: a tooltip per bar" "$(xp "$f" "count($BAR/*[local-name()='title'])")" "$want"
  done
  # The HTML parser (as browsers read it) accepts the page too; libxml2's
  # HTML 4 parser only does not know the SVG element names.
  err=$(xmllint --html --noout "$tmp/$name.html" 2>&1 | grep 'parser error' | grep -v 'Tag [a-z]* invalid')
  check "$name.html parses as HTML" "$err" ""
  check "$name.html: bars seen by the HTML parser" \
    "$(xmllint --html --xpath "count(//rect[@class='span'])" "$tmp/$name.html" 2>/dev/null)" "$want"
done
f="$tmp/fanout.svg"
check "fanout: the critical path is the parallel and its aggregator" \
  "$(xp "$f" "count($BAR[@data-critical='true'])")" 2
check "fanout: the nested agent's two children are in its group" \
  "$(xp "$f" "count($NODE[@data-span-id='e1f2031425364758']/*[local-name()='g'][@class='node'])")" 2
check "fanout: one failed bar" "$(xp "$f" "count($BAR[@data-status='error'])")" 1
check "gen20: names that need escaping come through as text" \
  "$(xp "$tmp/gen20.svg" "count(//*[local-name()='text'][contains(., '<script>&amp;\"quoted\"')]) > 0")" true
exit $fail
