-- The picture of a delegation tree (ad.domain.trace_view): the tree built
-- from span records, totals, the critical path, orphans, running spans,
-- the terminal layout at a fixed width, escaping and UTF-8 truncation.
-- Run: agent-dispatch run tests/lua/trace_view_test.lua
local here = arg[0]:match("(.*/)") or "./"
local tap = dofile(here .. "tap.lua")
local test, eq, ok, has = tap.test, tap.eq, tap.ok, tap.has
local json = require "ad.infra.json"
local tv = require "ad.domain.trace_view"
local gen = dofile(here .. "trace/gen.lua")

local function sp(id, parent, agent, s, e, status, cost, extra)
  local r = { trace_id = "t1", span_id = id, parent_id = parent, agent = agent,
    kind = "dispatch", start = 1000 + s, ["end"] = e and 1000 + e,
    status = status or "ok", cost_usd = cost or 0 }
  for k, v in pairs(extra or {}) do r[k] = v end
  return r
end

-- A parallel of three with a nested agent and an aggregator.
local function small()
  return {
    sp("r", nil, nil, 0, 20, "ok", 0, { kind = "parallel" }),
    sp("a", "r", "security", 0.1, 8, "ok", 0.0125),
    sp("b", "r", "backend", 0.2, 16, "ok", 0.05),
    sp("c", "r", "docs", 0.3, 2.5, "error", 0.001, { error_type = "timeout" }),
    sp("b1", "b", "db", 4, 15.5, "ok", 0.02),
    sp("b2", "b", "テスト担当エージェント", 5, 9, "refused"),
    sp("z", "r", "lead", 16.5, 20, "ok", 0.03, { kind = "aggregate" }),
  }
end

local function fanout()
  local spans = {}
  for line in io.lines(here .. "trace/fanout.jsonl") do spans[#spans + 1] = json.decode(line) end
  return spans
end

local function ids(list)
  local out = {}
  for i, n in ipairs(list) do out[i] = n.id end
  return table.concat(out, ",")
end

local function find(root, id)
  local stack = { root }
  while #stack > 0 do
    local n = table.remove(stack)
    if n.id == id then return n end
    for _, c in ipairs(n.children) do stack[#stack + 1] = c end
  end
end

local function critical(root)
  local out, n = {}, root
  while n and n.critical do
    out[#out + 1] = n.id or "(trace)"
    local nxt
    for _, c in ipairs(n.children) do if c.critical then nxt = c end end
    n = nxt
  end
  return table.concat(out, ">")
end

local function near(a, b, what)
  if math.abs(a - b) > 1e-9 then error((what or "value") .. ": expected " .. b .. ", got " .. a, 2) end
end

local function lines(s)
  local out = {}
  for l in s:gmatch("([^\n]*)\n") do out[#out + 1] = l end
  return out
end

-- Columns a line takes on a terminal (ANSI sequences take none).
local function cols(l)
  return tv._width((l:gsub("\27%[[%d;]*m", "")))
end

test("tree: parents and children from span ids, children in start order, depth", function()
  local root = tv.tree(fanout())
  eq(root.id, "a1b2c3d4e5f60718", "root")
  eq(root.synthetic, nil)
  eq(ids(root.children), "b1c2d3e4f5061728,c1d2e3f405162738,d1e2f30415263748,e1f2031425364758,1324354657687980")
  local backend = find(root, "e1f2031425364758")
  eq(backend.label, "backend")
  eq(ids(backend.children), "f102132435465768,0213243546576879")
  eq(backend.children[2].depth, 2)
  eq(root.spans, 8); eq(backend.spans, 3)
  eq(root.trace_id, "4f1c9a2e7b3d4e5fa6b7c8d9e0f1a2b3")
  -- Input order does not matter.
  local rev = fanout()
  for i = 1, #rev // 2 do rev[i], rev[#rev + 1 - i] = rev[#rev + 1 - i], rev[i] end
  eq(ids(tv.tree(rev).children), ids(root.children), "reversed input")
end)

test("tree: own and subtree cost and time; the root's total is the sum of every span's cost", function()
  local spans = fanout()
  local root = tv.tree(spans)
  local sum = 0
  for _, s in ipairs(spans) do sum = sum + s.cost_usd end
  near(root.total_cost, sum, "root total")
  eq(root.own_cost, 0)
  local backend = find(root, "e1f2031425364758")
  near(backend.own_cost, 0.0874)
  near(backend.total_cost, 0.0874 + 0.0931 + 0.1347, "backend subtree")
  eq(backend.duration_ms, 52520)
  eq(backend.total_ms, 52520, "subtree time: its children end inside it")
  eq(root.wall_ms, 74200)
  eq(root.failures, 1)
  eq(find(root, "c1d2e3f405162738").failed, true)
  eq(backend.failed, false)
end)

test("tree: the critical path is, from the root, the child whose subtree ends last", function()
  eq(critical(tv.tree(fanout())), "a1b2c3d4e5f60718>1324354657687980", "root then the aggregator")
  -- A child whose own span ended early but whose subtree (an async job)
  -- ends last is on the path, and so is that job.
  local spans = small()
  spans[#spans + 1] = sp("a1", "a", "async-job", 7, 25, "ok", 0.01, { kind = "async" })
  local root = tv.tree(spans)
  eq(critical(root), "r>a>a1")
  eq(find(root, "z").critical, nil)
  eq(root.wall_ms, 25000, "wall time up to the last end below the root")
  eq(find(root, "a").total_ms, 24900)
end)

test("tree: the last record of a span wins (a start record, then its end)", function()
  local spans = small()
  table.insert(spans, 2, sp("b1", "b", "db", 4, nil, "running"))
  local root = tv.tree(spans)
  local db = find(root, "b1")
  eq(db.status, "ok"); eq(db.running, false); eq(db.duration_ms, 11500)
  eq(root.spans, 7)
end)

test("tree: orphans hang under the root, marked; several roots get a synthetic root", function()
  local spans = small()
  spans[#spans + 1] = sp("o", "missing", "stray", 3, 4, "ok", 0.5)
  local root = tv.tree(spans)
  eq(root.id, "r")
  local o = find(root, "o")
  eq(o.orphan, true); eq(o.parent_id, "missing"); eq(o.depth, 1)
  near(root.total_cost, 0.1135 + 0.5, "the orphan's cost is counted")
  has(tv.text(root, { width = 100 }), "(orphan) stray")
  for _, w in ipairs({ 60, 72, 90 }) do
    for _, l in ipairs(lines(tv.text(root, { width = w }))) do
      ok(cols(l) <= w, string.format("fits %d columns: %s", w, l))
    end
  end

  local two = { sp("x", nil, "one", 0, 5, "ok", 0.1), sp("y", nil, "two", 1, 9, "ok", 0.2),
    sp("y1", "y", "two-child", 2, 3, "ok", 0.3) }
  local s = tv.tree(two)
  eq(s.synthetic, true); eq(s.id, nil)
  eq(ids(s.children), "x,y")
  eq(s.spans, 3, "the synthetic root is not a span")
  near(s.total_cost, 0.6)
  eq(critical(s), "(trace)>y>y1")
  eq(s.wall_ms, 9000)
  local text = tv.text(s, { width = 80 })
  has(text, "\n  one ", "roots drawn at the left margin")
  has(text, "\n★ two ")
  has(text, "\n★ └─ two-child ")
end)

test("tree: a cycle of parents is cut and hung under the root; a span that is its own parent is an orphan", function()
  local spans = { sp("r", nil, "root", 0, 10),
    sp("p", "q", "p", 1, 2), sp("q", "p", "q", 3, 4), sp("s", "s", "self", 5, 6) }
  local root = tv.tree(spans)
  eq(root.id, "r")
  eq(ids(root.children), "p,s")
  eq(find(root, "p").orphan, true); eq(ids(find(root, "p").children), "q")
  eq(find(root, "s").orphan, true)
  eq(root.spans, 4)
end)

test("tree: no spans, records without ids, JSON nulls", function()
  local e = tv.tree({})
  eq(e.synthetic, true); eq(e.spans, 0); eq(e.total_cost, 0); eq(e.wall_ms, 0)
  has(tv.text(e), "(no spans)")
  ok(tv.svg(e):find("</svg>", 1, true), "an empty SVG")
  -- JSON null (cjson.null) where the contract allows null.
  local r = json.decode('{"span_id":"r","parent_id":null,"agent":null,"kind":"parallel","start":1,"end":2,'
    .. '"status":"ok","cost_usd":0.25,"error_type":null,"session_id":null,"num_turns":null,"denied_tools":[]}')
  local root = tv.tree({ r, { start = 1.5, ["end"] = 1.6, status = "ok", parent_id = "r" }, "junk" })
  eq(root.id, "r"); eq(root.label, "parallel")
  eq(#root.children, 1, "a record without span_id is still drawn")
  has(tv.text(root), "parallel")
end)

test("tree: malformed fields are ignored, never fatal, in every renderer", function()
  local spans = {
    { span_id = "r", start = "soon", ["end"] = {}, status = 5, cost_usd = "1", agent = 7,
      denied_tools = "Bash", num_turns = 1.5, depth = "3", pid = "1", cached = "yes", task = { 1 } },
    { span_id = 9, parent_id = {}, start = 0 / 0, ["end"] = math.huge, cost_usd = -0.0 },
    { span_id = "x", parent_id = "r", start = 10, ["end"] = 5, status = "ok", duration_ms = "long",
      denied_tools = { 1, "Write", {} }, error_type = 3, session_id = false, num_turns = "2" },
  }
  local root = tv.tree(spans, 20)
  eq(root.spans, 3)
  eq(find(root, "x").duration_ms, 0, "an end before the start is a zero-length span")
  for _, out in ipairs({ tv.text(root), tv.text(root, { color = true, ascii = true, width = "wide" }),
      tv.svg(root), tv.html(root) }) do
    ok(type(out) == "string" and #out > 0, "drawn")
  end
end)

test("tree: running spans end at now (default: the latest time in the trace)", function()
  local spans = small()
  spans[#spans + 1] = sp("w", "b", "watcher", 10, nil, "running")
  local root = tv.tree(spans)
  local w = find(root, "w")
  eq(w.running, true); eq(w.finish, 1020); eq(w.duration_ms, 10000)
  eq(root.running_spans, 1)
  root = tv.tree(spans, 1030)
  eq(find(root, "w").duration_ms, 20000)
  eq(root.wall_ms, 30000)
  eq(critical(root), "r>b>w")
  eq(tv.tree(spans, { now = 1025 }).wall_ms, 25000)
  -- A renderer's now re-times the running spans.
  has(tv.text(root, { now = 1040, width = 80 }), "30.0s")
  has(tv.svg(root, { now = 1040 }), "running")
end)

test("tree: failures are error, cancelled and refused", function()
  local spans = { sp("r", nil, "root", 0, 10, "ok"), sp("e", "r", "e", 1, 2, "error"),
    sp("c", "r", "c", 1, 2, "cancelled"), sp("f", "r", "f", 1, 2, "refused"),
    sp("k", "r", "k", 1, 2, "ok", 0, { cached = true }), sp("g", "r", "g", 1, nil, "running") }
  local root = tv.tree(spans)
  eq(root.failures, 3)
  for _, id in ipairs({ "e", "c", "f" }) do eq(find(root, id).failed, true, id) end
  for _, id in ipairs({ "r", "k", "g" }) do eq(find(root, id).failed, false, id) end
  has(tv.text(root), "cached")
end)

test("text: layout at a fixed width", function()
  local want = table.concat({
    "trace t1  ·  7 spans  ·  2 failed  ·  $0.1135  ·  20.0s",
    "  span               status     time     cost    total  0s         20.0s",
    "★ parallel           ok        20.0s       $0  $0.1135  ████████████████",
    "  ├─ security        ok        7.90s  $0.0125           ██████",
    "  ├─ backend         ok        15.8s  $0.0500  $0.0700  █████████████",
    "  │  ├─ db           ok        11.5s  $0.0200              █████████",
    "  │  └─ テスト担当…  refused   4.00s       $0               ▓▓▓",
    "  ├─ docs            error     2.20s  $0.0010           ▓▓",
    "★ └─ lead (aggrega…  ok        3.50s  $0.0300                        ███",
    "★ critical path  ·  total: the span and everything below it",
  }, "\n") .. "\n"
  local got = tv.text(tv.tree(small()), { width = 72 })
  eq(got, want)
  for _, l in ipairs(lines(got)) do ok(cols(l) <= 72, "fits 72 columns: " .. l) end
  ok(not got:find("\27", 1, true), "no escape sequences without color")
end)

test("tree: an answer from the cache spent nothing: no cost of its own, none in the totals", function()
  local spans = {
    sp("r", nil, nil, 0, 2, "ok", 0, { kind = "parallel" }),
    sp("a", "r", "a", 0.1, 0.2, "ok", 0.3, { cached = true }),
    sp("b", "r", "b", 0.1, 1.5, "ok", 0.05),
  }
  local root = tv.tree(spans)
  eq(find(root, "a").own_cost, 0)
  near(root.total_cost, 0.05, "the total")
  near(require("ad.domain.trace").summary("t1", spans).total_cost_usd, 0.05, "the summary")
end)

test("text: short names under a run and a parallel keep their tree lines (no cut when the row fits)", function()
  local spans = {
    sp("r", nil, nil, 0, 2, "ok", 0, { kind = "run" }),
    sp("p", "r", nil, 0.1, 1.9, "ok", 0, { kind = "parallel" }),
    sp("a", "p", "a", 0.2, 1, "ok", 0.01),
    sp("b", "p", "b", 0.3, 1.5, "ok", 0.01),
  }
  local got = tv.text(tv.tree(spans), { width = 80 })
  ok(not got:find("…", 1, true), "tree lines cut although the row fits:\n" .. got)
  has(got, "   ├─ a", "the first item under the parallel")
  has(got, "   └─ b", "the last item under the parallel")
end)

test("text: every line fits the width, for 200 spans with deep trees and wide names", function()
  local spans, now = gen(200, 200)
  local root = tv.tree(spans, now)
  for _, w in ipairs({ 60, 80, 100, 160 }) do
    for _, color in ipairs({ false, true }) do
      local out = lines(tv.text(root, { width = w, color = color }))
      eq(#out, 200 + 3, "one line per span, a header, a column line and the legend")
      for i, l in ipairs(out) do
        ok(cols(l) <= w, string.format("width %d line %d has %d columns: %s", w, i, cols(l), l))
      end
    end
  end
  has(tv.text(root, { width = 100 }), "…", "deep tree lines cut on the left")
end)

test("a chain 300 deep: text lines fit, SVG labels stay in the label panel", function()
  local spans = { sp("s0", nil, "root", 0, 301) }
  for i = 1, 300 do spans[#spans + 1] = sp("s" .. i, "s" .. (i - 1), "agent-" .. i, i, 301 - i / 2) end
  local root = tv.tree(spans)
  eq(root.spans, 301)
  eq(find(root, "s300").depth, 300)
  for _, l in ipairs(lines(tv.text(root, { width = 80 }))) do ok(cols(l) <= 80, l) end
  local svg = tv.svg(root, { width = 1000 })
  local n = 0
  for x in svg:gmatch('<text class="name[^"]*" x="(%d+)"') do
    n = n + 1
    ok(tonumber(x) <= 350 - 60, "label at x=" .. x .. " inside the 350px panel")
  end
  eq(n, 301)
end)

test("text: with color, failures red and the critical path bold; bars follow the time axis", function()
  local got = tv.text(tv.tree(small()), { width = 72, color = true })
  local docs, lead
  for _, l in ipairs(lines(got)) do
    if l:find("docs", 1, true) then docs = l end
    if l:find("lead", 1, true) then lead = l end
  end
  has(docs, "\27[31mdocs")
  has(docs, "\27[31merror")
  has(lead, "\27[1m★")
  has(lead, "\27[1mlead")
  has(got, "\27[0m")
  -- The aggregator's bar starts 82.5% along a 16-column axis.
  local plain = tv.text(tv.tree(small()), { width = 72 })
  local row = plain:match("\n(★ └─ lead[^\n]*)")
  local axis_col = cols(plain:match("\n(  span.-)0s"))
  eq(cols(row:match("^(.-)█")), axis_col + 13)
end)

test("text: control characters, escapes and invalid UTF-8 never reach the terminal", function()
  local spans = { sp("r", nil, "evil\27]0;pwned\7\27[2J\r\nname\u{202E}txt.exe", 0, 1),
    sp("x", "r", "bad\xff\xfeutf8\xc3", 0, 1, "ok", 0, { trace_id = "t\27[31m" }) }
  for _, color in ipairs({ false, true }) do
    local out = tv.text(tv.tree(spans), { width = 100, color = color })
    local stripped = out:gsub("\27%[[%d;]*m", "")
    ok(not (stripped:gsub("\n", "")):find("%c"), "no control characters")
    ok(not out:find("\u{202E}", 1, true), "no bidi override")
    ok(utf8.len(out), "valid UTF-8")
    has(out, "bad\u{FFFD}\u{FFFD}utf8\u{FFFD}")
  end
end)

test("text: UTF-8 names are cut on code points to the display width", function()
  eq(tv._fit("日本語のエージェント", 7), "日本語…")
  eq(tv._fit("日本語のエージェント", 8), "日本語…", "a wide character never half-shown")
  eq(tv._fit("émoji-🚀-long", 8), "émoji-…")
  eq(tv._fit("émoji-🚀-long", 9), "émoji-🚀…")
  eq(tv._fit("short", 8), "short")
  eq(tv._fit("e\u{301}e\u{301}e\u{301}xyz", 4), "e\u{301}e\u{301}e\u{301}…", "combining marks take no column")
  eq(tv._width("日本語"), 6)
  local ascii = tv.text(tv.tree(small()), { width = 72, ascii = true })
  ok(not ascii:find("[\128-\255]"), "ASCII only")
  has(ascii, "`- lead (aggre...")
  has(ascii, "|  `- ??????????")
end)

test("svg: one bar per span, nested as the tree, escaped, self-contained", function()
  local spans = small()
  spans[2].agent = "<b>\"quoted\" & 'apos'</b>\1\27"
  spans[2].task = "fix ]]> & <![CDATA[ things"
  local svg = tv.svg(tv.tree(spans))
  local n = 0
  for _ in svg:gmatch('<rect class="span" ') do n = n + 1 end
  eq(n, 7, "bars")
  n = 0
  for _ in svg:gmatch('<g class="node" ') do n = n + 1 end
  eq(n, 7, "node groups")
  has(svg, "&lt;b&gt;&quot;quoted&quot; &amp; &#39;apos&#39;&lt;/b&gt;")
  has(svg, "fix ]]&gt; &amp; &lt;![CDATA[ things")
  ok(not svg:find("<b>", 1, true), "no raw markup from names")
  ok(not svg:find("[\1-\8\11\12\14-\31]"), "no characters XML forbids")
  -- b1 is drawn inside b's group: b's group opens before b1's and closes after.
  local gb = svg:find('<g class="node" data-span-id="b"', 1, true)
  local gb1 = svg:find('<g class="node" data-span-id="b1"', 1, true)
  local gc = svg:find('<g class="node" data-span-id="c"', 1, true)
  ok(gb < gb1 and gb1 < gc, "tree order")
  local between = svg:sub(gb, gc)
  local opens, closes = 0, 0
  for _ in between:gmatch("<g[ >]") do opens = opens + 1 end
  for _ in between:gmatch("</g>") do closes = closes + 1 end
  eq(opens, closes, "b's group (with b1 and b2) is closed before c's opens")
  has(svg, 'data-span-id="z" data-parent-id="r" data-status="ok" data-critical="true"')
  has(svg, 'data-span-id="c" data-parent-id="r" data-status="error"')
  for _, bad in ipairs({ "href", "src=", "url(", "@import", "<script", "<image", "<foreignObject" }) do
    ok(not svg:find(bad, 1, true), "nothing external: " .. bad)
  end
end)

test("html: summary, timeline and failures in one page with nothing fetched", function()
  local html = tv.html(tv.tree(fanout()))
  has(html, "<!DOCTYPE html>")
  has(html, '<div class="v">$0.5691</div><div class="k">total cost</div>')
  has(html, '<div class="v">1m14s</div><div class="k">wall time</div>')
  has(html, '<div class="v">8</div><div class="k">spans</div>')
  has(html, '<div class="card bad"><div class="v">1</div><div class="k">failures</div>')
  has(html, '<td class="failed">performance</td><td>error (timeout)</td>')
  local n = 0
  for _ in html:gmatch('<rect class="span" ') do n = n + 1 end
  eq(n, 8)
  local noxmlns = html:gsub('xmlns="http://www.w3.org/2000/svg"', "")
  for _, bad in ipairs({ "http:", "https:", "href", "src=", "url(", "@import", "//cdn" }) do
    ok(not noxmlns:find(bad, 1, true), "nothing fetched: " .. bad)
  end
end)

test("numbers: durations and costs", function()
  eq(tv.duration(0), "0ms"); eq(tv.duration(850), "850ms"); eq(tv.duration(1250), "1.25s")
  eq(tv.duration(12345), "12.3s"); eq(tv.duration(125000), "2m05s"); eq(tv.duration(3725000), "1h02m")
  eq(tv.cost(0), "$0"); eq(tv.cost(0.04213), "$0.0421"); eq(tv.cost(12.5), "$12.50"); eq(tv.cost(140.2), "$140")
end)

os.exit(tap.done() and 0 or 1)
