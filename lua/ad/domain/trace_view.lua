--- A picture of a delegation tree. Takes the span records of one trace (as
--- the trace store writes them, one per span_id) and builds the tree
--- (`tree`), then draws it for a terminal (`text`), as an SVG timeline
--- (`svg`) or as a self-contained HTML page (`html`). Pure: no I/O, no clock
--- (running spans are drawn up to `now`, given by the caller).
---
--- A node of the tree:
---   id, parent_id     span ids (nil on a synthetic root)
---   span              the record as given
---   children          ordered by start, then span id
---   depth             0 at the root
---   label             agent name, or the kind for a group node
---   status, failed    failed: error, cancelled or refused
---   running           still running: drawn up to `now`
---   orphan            its parent span is not in the trace (hung under the root)
---   synthetic         the root made to hold several roots (not a span)
---   start, finish     epoch seconds (finish = now while running)
---   duration_ms       this span's own time
---   own_cost, total_cost   this span's cost, and with everything below it
---   first, last       the earliest start and latest end in the subtree
---   spans, failures   counts in the subtree (the synthetic root not counted)
---   critical          on the critical path: from the root, repeatedly the
---                     child whose subtree ends last
--- The root also has trace_id, now, wall_ms (first to last) and
--- running_spans.
---
--- Over 500 lines on purpose: the terminal, SVG and HTML drawings share the
--- tree, its measures and the text-width helpers; all of it is pure.
local M = {}

local FAILED = { error = true, cancelled = true, refused = true }

-- Private to the renderers: the rows in tree order and the input of a root
-- (kept out of the node tables so a tree encodes as plain JSON).
local ROWS = setmetatable({}, { __mode = "k" })
local INPUT = setmetatable({}, { __mode = "k" })

local function str(v)
  if type(v) == "string" and v ~= "" then return v end
  return nil
end

local function num(v)
  if type(v) == "number" and v == v and v ~= math.huge and v ~= -math.huge then
    return v
  end
  return nil
end

-- An integer field: a number with an integral value (never a numeric string).
local function int(v)
  return num(v) and math.tointeger(v)
end

local function round(x)
  return math.floor(x + 0.5)
end

------------------------------------------------------------------------
-- Text: valid UTF-8 without control characters, display width, truncation
------------------------------------------------------------------------

--- s as valid, printable, one-line UTF-8: invalid bytes become U+FFFD;
--- control characters (C0, DEL, C1) become spaces; bidirectional overrides
--- are dropped (a name could otherwise reorder the line it is printed on);
--- U+FFFE/U+FFFF (not allowed in XML) become U+FFFD.
local function clean(s)
  if s == nil then return "" end
  s = tostring(s)
  if not utf8.len(s) then
    local parts, i = {}, 1
    while i <= #s do
      local n, bad = utf8.len(s, i)
      if n then parts[#parts + 1] = s:sub(i); break end
      parts[#parts + 1] = s:sub(i, bad - 1) .. "\u{FFFD}"
      i = bad + 1
    end
    s = table.concat(parts)
  end
  s = s:gsub("%c", " "):gsub("\xC2[\x80-\x9F]", " ")
  s = s:gsub("\xE2\x80[\xAA-\xAE]", ""):gsub("\xE2\x81[\xA6-\xA9]", "")
  return (s:gsub("\xEF\xBF[\xBE\xBF]", "\u{FFFD}"))
end
M.clean = clean

-- Columns a code point takes on a terminal (after Markus Kuhn's wcwidth):
-- 0 for combining marks and zero-width characters, 2 for East Asian wide
-- and fullwidth forms and emoji, 1 otherwise.
local function cpwidth(c)
  if (c >= 0x300 and c <= 0x36F) or (c >= 0x1AB0 and c <= 0x1AFF)
      or (c >= 0x1DC0 and c <= 0x1DFF) or (c >= 0x200B and c <= 0x200F)
      or (c >= 0x20D0 and c <= 0x20FF) or (c >= 0xFE00 and c <= 0xFE0F)
      or (c >= 0xFE20 and c <= 0xFE2F) or c == 0x2060 or c == 0xFEFF then
    return 0
  end
  if c >= 0x1100 and (c <= 0x115F or c == 0x2329 or c == 0x232A
      or (c >= 0x2E80 and c <= 0xA4CF and c ~= 0x303F)
      or (c >= 0xAC00 and c <= 0xD7A3) or (c >= 0xF900 and c <= 0xFAFF)
      or (c >= 0xFE30 and c <= 0xFE6F) or (c >= 0xFF00 and c <= 0xFF60)
      or (c >= 0xFFE0 and c <= 0xFFE6) or (c >= 0x1F300 and c <= 0x1F64F)
      or (c >= 0x1F680 and c <= 0x1F6FF) or (c >= 0x1F900 and c <= 0x1F9FF)
      or (c >= 0x20000 and c <= 0x3FFFD)) then
    return 2
  end
  return 1
end

--- Display width of a cleaned string.
local function width(s)
  local w = 0
  for _, c in utf8.codes(s) do w = w + cpwidth(c) end
  return w
end
M._width = width

--- s (cleaned) cut to at most w columns, on code points, ending with
--- `ellipsis` ("…" by default) when cut.
local function fit(s, w, ellipsis)
  if width(s) <= w then return s end
  ellipsis = ellipsis or "…"
  local ew = width(ellipsis)
  if w < ew then return ("."):rep(math.max(w, 0)) end
  local out, used = {}, 0
  for _, c in utf8.codes(s) do
    local cw = cpwidth(c)
    if used + cw > w - ew then break end
    out[#out + 1] = utf8.char(c)
    used = used + cw
  end
  return table.concat(out) .. ellipsis
end
M._fit = fit

--- s cut to at most n code points, with "…" when cut (for the SVG, where
--- widths are estimated).
local function cut(s, n)
  if utf8.len(s) <= n then return s end
  return s:sub(1, utf8.offset(s, n) - 1) .. "…"
end

local function pad(s, w)
  return s .. string.rep(" ", w - width(s))
end

local function lpad(s, w)
  return string.rep(" ", w - width(s)) .. s
end

------------------------------------------------------------------------
-- Numbers
------------------------------------------------------------------------

--- 850ms, 1.25s, 12.3s, 2m05s, 1h02m.
function M.duration(ms)
  ms = math.max(0, round(ms or 0))
  if ms < 1000 then return string.format("%dms", ms) end
  local s = ms / 1000
  if s < 10 then return string.format("%.2fs", s) end
  if s < 60 then return string.format("%.1fs", s) end
  s = math.floor(s)
  if s < 3600 then return string.format("%dm%02ds", s // 60, s % 60) end
  return string.format("%dh%02dm", s // 3600, s % 3600 // 60)
end

--- $0, $0.0421, $12.50, $140.
function M.cost(c)
  c = c or 0
  if c == 0 then return "$0" end
  if c < 1 then return string.format("$%.4f", c) end
  if c < 100 then return string.format("$%.2f", c) end
  return string.format("$%.0f", c)
end

------------------------------------------------------------------------
-- The tree
------------------------------------------------------------------------

local function by_start(a, b)
  if a.start ~= b.start then return a.start < b.start end
  return (a.id or "") < (b.id or "")
end

-- Nodes in tree order (preorder), with depth set. Iterative: a trace can
-- be deep.
local function preorder(root)
  local rows, stack = {}, { root }
  root.depth = 0
  while #stack > 0 do
    local n = table.remove(stack)
    rows[#rows + 1] = n
    for i = #n.children, 1, -1 do
      local c = n.children[i]
      c.depth = n.depth + 1
      stack[#stack + 1] = c
    end
  end
  return rows
end

-- One node per record (the last record of a span_id wins), with its times.
local function make_nodes(spans, now)
  local recs, order = {}, {}
  for i, rec in ipairs(spans or {}) do
    if type(rec) == "table" then
      local id = str(rec.span_id) or ("#" .. i)
      if not recs[id] then order[#order + 1] = id end
      recs[id] = rec
    end
  end
  local latest
  for _, id in ipairs(order) do
    local r = recs[id]
    for _, t in ipairs({ num(r.start), num(r["end"]) }) do
      if not latest or t > latest then latest = t end
    end
  end
  now = num(now) or latest or 0
  local nodes = {}
  for _, id in ipairs(order) do
    local r = recs[id]
    local status = str(r.status) or (num(r["end"]) and "unknown" or "running")
    local start = num(r.start) or num(r["end"]) or now
    local finish = num(r["end"])
    local running = status == "running"
    if running then
      finish = math.max(now, start)
    elseif not finish and num(r.duration_ms) then
      finish = start + r.duration_ms / 1000
    end
    finish = math.max(finish or start, start)
    -- (an answer from the result cache spent nothing this time: its
    -- record keeps what the answer cost when it was made)
    local own = r.cached ~= true and num(r.cost_usd) or 0
    local label = str(r.agent) or str(r.kind) or "span"
    nodes[#nodes + 1] = {
      id = id, parent_id = str(r.parent_id), span = r, children = {},
      label = label, status = status, failed = FAILED[status] or false,
      running = running, start = start, finish = finish,
      duration_ms = (not running and int(r.duration_ms))
        or round((finish - start) * 1000),
      own_cost = own,
    }
  end
  return nodes, now
end

-- Links children to parents. Returns the roots (no parent_id) and the
-- orphans (a parent_id not in the trace, or a cycle of parents).
local function link(nodes)
  local index = {}
  for _, n in ipairs(nodes) do index[n.id] = n end
  local roots, orphans = {}, {}
  for _, n in ipairs(nodes) do
    local p = n.parent_id and n.parent_id ~= n.id and index[n.parent_id]
    if p then
      p.children[#p.children + 1] = n
      n.parent = p
    elseif n.parent_id then
      n.orphan = true
      orphans[#orphans + 1] = n
    else
      roots[#roots + 1] = n
    end
  end
  -- Spans whose parents form a cycle reach no root: cut each cycle at its
  -- earliest span and hang that span under the root as an orphan.
  local seen = {}
  local function reach(list)
    for _, s in ipairs(list) do
      local stack = { s }
      while #stack > 0 do
        local n = table.remove(stack)
        seen[n] = true
        for _, c in ipairs(n.children) do
          if not seen[c] then stack[#stack + 1] = c end
        end
      end
    end
  end
  reach(roots); reach(orphans)
  local rest = {}
  for _, n in ipairs(nodes) do if not seen[n] then rest[#rest + 1] = n end end
  table.sort(rest, by_start)
  for _, n in ipairs(rest) do
    if not seen[n] then
      local siblings = n.parent.children
      for i = #siblings, 1, -1 do
        if siblings[i] == n then table.remove(siblings, i) end
      end
      n.orphan = true
      orphans[#orphans + 1] = n
      reach({ n })
    end
  end
  return roots, orphans
end

-- Totals bottom-up (rows in preorder, walked backwards), then the critical
-- path top-down.
local function measure(root, rows)
  for i = #rows, 1, -1 do
    local n = rows[i]
    n.total_cost = n.own_cost or 0
    n.spans = n.synthetic and 0 or 1
    n.failures = n.failed and 1 or 0
    n.first, n.last = n.start, n.finish
    for _, c in ipairs(n.children) do
      n.total_cost = n.total_cost + c.total_cost
      n.spans = n.spans + c.spans
      n.failures = n.failures + c.failures
      if not n.first or c.first < n.first then n.first = c.first end
      if not n.last or c.last > n.last then n.last = c.last end
    end
    n.total_ms = round(((n.last or 0) - (n.first or 0)) * 1000)
  end
  local n = root
  while n do
    n.critical = true
    local next_
    for _, c in ipairs(n.children) do
      if not next_ or c.last > next_.last then next_ = c end
    end
    n = next_
  end
end

--- The tree of an array of span records. `now` (epoch seconds, or a table
--- with a `now` field) is where running spans end; by default the latest
--- time in the trace.
---@param spans table[]
---@param now number|table|nil
---@return table root
function M.tree(spans, now)
  if type(now) == "table" then now = now.now end
  local nodes
  nodes, now = make_nodes(spans, now)
  local roots, orphans = link(nodes)
  local root
  if #roots == 1 then
    root = roots[1]
  else
    root = { synthetic = true, label = "trace", status = #roots == 0 and #orphans == 0
             and "empty" or "trace", failed = false, running = false,
             children = {}, span = {}, own_cost = 0, duration_ms = 0 }
    for _, r in ipairs(roots) do root.children[#root.children + 1] = r end
  end
  for _, o in ipairs(orphans) do root.children[#root.children + 1] = o end
  for _, n in ipairs(nodes) do
    n.parent = nil
    table.sort(n.children, by_start)
  end
  table.sort(root.children, by_start)
  local rows = preorder(root)
  measure(root, rows)
  if root.synthetic then
    root.start, root.finish = root.first or now, root.last or now
  end
  root.first, root.last = root.first or now, root.last or now
  root.wall_ms = round((root.last - root.first) * 1000)
  root.now = now
  root.running_spans = 0
  for _, n in ipairs(rows) do
    if n.running then root.running_spans = root.running_spans + 1 end
    if not root.trace_id then root.trace_id = str(n.span.trace_id) end
  end
  ROWS[root], INPUT[root] = rows, spans
  return root
end

-- The root to draw: a tree (rebuilt when opts.now moves the running spans),
-- or an array of records.
local function prepare(root, opts)
  if not ROWS[root] then return M.tree(root, opts.now) end
  if opts.now and opts.now ~= root.now then return M.tree(INPUT[root], opts.now) end
  return root
end

-- The rows to draw: tree order without a synthetic root, each with the
-- depth it is drawn at.
local function drawn(root)
  local out = {}
  for _, n in ipairs(ROWS[root]) do
    if not n.synthetic then
      out[#out + 1] = { node = n, depth = root.synthetic and n.depth - 1 or n.depth }
    end
  end
  return out
end

local function label_of(n)
  local l = n.label
  local kind = str(n.span.kind)
  if str(n.span.agent) and kind and kind ~= "dispatch" and kind ~= "item"
      and kind ~= "session" and kind ~= "stream" then
    l = l .. " (" .. kind .. ")"
  end
  return clean(l)
end

local function status_of(n)
  if n.status == "ok" and n.span.cached == true then return "cached" end
  return n.status
end

------------------------------------------------------------------------
-- Terminal
------------------------------------------------------------------------

local ESC = {
  reset = "\27[0m", bold = "\27[1m", dim = "\27[2m", red = "\27[31m",
  green = "\27[32m", yellow = "\27[33m", cyan = "\27[36m",
}
local STATUS_COLOR = { ok = "green", cached = "cyan", running = "yellow",
  error = "red", cancelled = "red", refused = "red" }

local GLYPHS = {
  unicode = { tee = "├─ ", last = "└─ ", pipe = "│  ", blank = "   ", star = "★",
              full = "█", run = "▒", fail = "▓", thin = "▏", more = "…" },
  ascii = { tee = "|- ", last = "`- ", pipe = "|  ", blank = "   ", star = "*",
            full = "#", run = "~", fail = "X", thin = "|", more = "<" },
}

--- Levels of a tree drawn as indentation; a deeper row says its depth
--- instead ("…41 "), so a chain of thousands of spans (a loop, a forged
--- file) costs each row a prefix of bounded length, not one as long as
--- its depth (quadratic: 10,000 levels took 330 MB and a minute).
M.MAX_INDENT = 32

-- Tree prefixes ("│  ├─ ") of the drawn rows.
local function prefixes(rows, g)
  local prefix, cont = {}, {}
  for _, r in ipairs(rows) do
    local n = r.node
    if r.depth == 0 then prefix[n], cont[n] = "", "" end
    local d = r.depth + 1
    for i, c in ipairs(n.children) do
      if d <= M.MAX_INDENT then
        local last = i == #n.children
        prefix[c] = cont[n] .. (last and g.last or g.tee)
        cont[c] = cont[n] .. (last and g.blank or g.pipe)
      else
        prefix[c] = cont[n] .. g.more .. d .. " "
        cont[c] = cont[n]
      end
    end
  end
  return prefix
end

local function bar(n, root, bw, g)
  local span = root.last - root.first
  local a, b
  if span <= 0 then
    a, b = 0, 1
  else
    a = math.min(bw - 1, math.floor((n.start - root.first) / span * bw))
    b = math.max(a + 1, math.min(bw, round((n.finish - root.first) / span * bw)))
  end
  local glyph = n.failed and g.fail or n.running and g.run or g.full
  if n.finish - n.start < span / bw / 2 and not n.running then glyph = g.thin end
  return string.rep(" ", a), string.rep(glyph, b - a), string.rep(" ", bw - b)
end

--- The tree for a terminal: one line per span with its agent, status,
--- time, cost (own and, for a parent, the subtree's total) and a bar on
--- the trace's time axis, scaled to opts.width columns (default 80).
--- opts.color: ANSI colours (failures red, the critical path bold);
--- opts.ascii: ASCII lines and bars; opts.now: where running spans end.
---@return string
function M.text(root, opts)
  opts = opts or {}
  root = prepare(root, opts)
  local g = opts.ascii and GLYPHS.ascii or GLYPHS.unicode
  local ellipsis = opts.ascii and "..." or "…"
  local W = math.max(40, int(opts.width) or 80)
  local color = opts.color and true or false
  local function paint(s, ...)
    if not color then return s end
    local pre = {}
    for i = 1, select("#", ...) do
      local k = select(i, ...)
      if k then pre[#pre + 1] = ESC[k] end
    end
    if #pre == 0 then return s end
    return table.concat(pre) .. s .. ESC.reset
  end
  local rows = drawn(root)
  local prefix = prefixes(rows, g)

  local head = { string.format("%d span%s", root.spans, root.spans == 1 and "" or "s") }
  if root.trace_id then table.insert(head, 1, "trace " .. clean(root.trace_id)) end
  if root.failures > 0 then head[#head + 1] = paint(root.failures .. " failed", "red", "bold") end
  if root.running_spans > 0 then head[#head + 1] = paint(root.running_spans .. " running", "yellow") end
  head[#head + 1] = M.cost(root.total_cost)
  head[#head + 1] = M.duration(root.wall_ms)
  -- A narrow terminal gets a shorter header: tighter separators, then no
  -- trace id, then the plain text cut to the width.
  local function cols(s) return width((s:gsub("\27%[[%d;]*m", ""))) end
  local sep = opts.ascii and "  -  " or "  ·  "
  if cols(table.concat(head, sep)) > W then sep = opts.ascii and " - " or " · " end
  if cols(table.concat(head, sep)) > W and root.trace_id then table.remove(head, 1) end
  local title = table.concat(head, sep)
  if cols(title) > W then title = fit((title:gsub("\27%[[%d;]*m", "")), W, ellipsis) end
  local out = { title }
  if #rows == 0 then
    out[#out + 1] = "(no spans)"
    return table.concat(out, "\n") .. "\n"
  end

  -- Columns: mark, name (tree lines and label), status, time, cost,
  -- total, bar. The name column takes at most 40% of the width; deeper
  -- tree lines than it holds are cut on the left ("…│  └─ ").
  local cap = math.max(12, W * 40 // 100)
  local labels, need = {}, 4
  for _, r in ipairs(rows) do
    local n = r.node
    local l = label_of(n)
    if n.orphan then l = "(orphan) " .. l end
    if opts.ascii then
      l = l:gsub(utf8.charpattern, function(c) return #c > 1 and "?" or nil end)
    end
    labels[n] = l
    need = math.max(need, math.min(width(prefix[n]), cap - 6) + width(l))
  end
  local parents, sw = false, 6
  for _, r in ipairs(rows) do
    if #r.node.children > 0 then parents = true end
    sw = math.max(sw, #status_of(r.node))
  end
  local nw = math.min(need, cap)
  local function bar_width()
    return W - (2 + nw + 2 + sw + 8 + 9 + (parents and 9 or 0) + 2)
  end
  -- Narrow terminals: a narrower name column first (to 16), then no total
  -- column, then a name column down to 8.
  local bw = bar_width()
  if bw < 16 then nw = math.max(math.min(nw, 16), nw - (16 - bw)); bw = bar_width() end
  if bw < 16 and parents then parents = false; bw = bar_width() end
  if bw < 16 then nw = math.max(8, nw - (16 - bw)); bw = bar_width() end
  bw = math.max(bw, 10)

  local axis = pad("0s", bw - width(M.duration(root.wall_ms))) .. M.duration(root.wall_ms)
  out[#out + 1] = paint("  " .. pad("span", nw) .. "  " .. pad("status", sw)
    .. lpad("time", 8) .. lpad("cost", 9) .. (parents and lpad("total", 9) or "")
    .. "  " .. axis, "dim")
  for _, r in ipairs(rows) do
    local n = r.node
    local name, lines = labels[n], prefix[n]
    -- Tree lines give way (cut on the left) only when the row does not
    -- fit, and then leave the name at least 6 columns.
    local keep = nw - 6
    if width(lines) + width(name) > nw and width(lines) > keep then
      -- Tree lines are one column per code point.
      lines = g.more .. lines:sub(utf8.offset(lines, -(keep - 1)) or 1)
    end
    local room = nw - width(lines)
    name = fit(name, room, ellipsis)
    local st = status_of(n)
    local a, mid, z = bar(n, root, bw, g)
    local total = ""
    if parents then total = #n.children > 0 and lpad(M.cost(n.total_cost), 9) or string.rep(" ", 9) end
    out[#out + 1] = table.concat({
      n.critical and paint(g.star, "bold") or " ", " ",
      lines, paint(name, n.critical and "bold", n.failed and "red"),
      string.rep(" ", room - width(name)), "  ",
      paint(pad(st, sw), STATUS_COLOR[st]),
      lpad(M.duration(n.duration_ms), 8), lpad(M.cost(n.own_cost), 9), total, "  ",
      a, paint(mid, STATUS_COLOR[st], n.critical and "bold"), z,
    }):gsub("%s+$", "")
  end
  local legend = { g.star .. " critical path" }
  for _, r in ipairs(rows) do
    if r.node.orphan then legend[#legend + 1] = "(orphan) parent span not in the trace"; break end
  end
  if parents then legend[#legend + 1] = "total: the span and everything below it" end
  -- As many legend items on a line as fit.
  local line = legend[1]
  for i = 2, #legend do
    if width(line .. sep .. legend[i]) <= W then
      line = line .. sep .. legend[i]
    else
      out[#out + 1] = paint(line, "dim")
      line = legend[i]
    end
  end
  out[#out + 1] = paint(line, "dim")
  return table.concat(out, "\n") .. "\n"
end

------------------------------------------------------------------------
-- SVG
------------------------------------------------------------------------

local XML_ESC = { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;",
  ['"'] = "&quot;", ["'"] = "&#39;" }

--- s cleaned and escaped for XML text and attribute values.
local function xml(s)
  return (clean(s):gsub("[&<>\"']", XML_ESC))
end
M._xml = xml

local COLORS = { ok = "#2f9e6e", cached = "#86c9a9", running = "#3b82f6",
  error = "#dc2626", cancelled = "#f59e0b", refused = "#8b5cf6", unknown = "#9ca3af" }

local function f1(x)
  return (string.format("%.1f", x):gsub("%.0$", ""))
end

-- Tick step (seconds) for a span of t seconds over about `count` ticks.
local function tick_step(t, count)
  local raw = t / math.max(1, count)
  if raw > 10 then
    for _, s in ipairs({ 15, 20, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800,
                         21600, 43200, 86400 }) do
      if s >= raw then return s end
    end
    return 86400 * math.ceil(raw / 86400)
  end
  local p = 10 ^ math.floor(math.log(raw, 10))
  for _, m in ipairs({ 1, 2, 5, 10 }) do
    if m * p >= raw then return m * p end
  end
  return 10 * p
end

local function tick_label(t, step)
  if t == 0 then return "0" end
  if t < 1 then return string.format("%dms", round(t * 1000)) end
  if t < 60 then return string.format("%gs", round(t * 1000) / 1000) end
  local s = round(t)
  if s < 3600 then
    return s % 60 == 0 and string.format("%dm", s // 60) or string.format("%dm%02ds", s // 60, s % 60)
  end
  return s % 3600 == 0 and string.format("%dh", s // 3600) or string.format("%dh%02dm", s // 3600, s % 3600 // 60)
end

local function tooltip(n, root)
  local s = n.span
  local head = label_of(n)
  if str(s.agent) and str(s.kind) and not head:find("(", 1, true) then
    head = head .. " (" .. clean(s.kind) .. ")"
  end
  local lines = { head }
  local st = n.status .. (str(s.error_type) and " (" .. clean(s.error_type) .. ")" or "")
  if s.cached == true then st = st .. ", cached" end
  if n.running then st = st .. ", drawn up to now" end
  lines[#lines + 1] = "status: " .. st
  lines[#lines + 1] = string.format("start: +%s   duration: %s",
    M.duration((n.start - root.first) * 1000), M.duration(n.duration_ms))
  local c = "cost: " .. M.cost(n.own_cost)
  if #n.children > 0 then c = c .. "   with children: " .. M.cost(n.total_cost) end
  if int(s.num_turns) then c = c .. "   turns: " .. int(s.num_turns) end
  lines[#lines + 1] = c
  if n.critical then lines[#lines + 1] = "on the critical path" end
  if n.orphan then lines[#lines + 1] = "parent span " .. clean(n.parent_id) .. " is not in the trace" end
  if str(s.task) then lines[#lines + 1] = "task: " .. cut(clean(s.task), 200) end
  if str(s.caller) then lines[#lines + 1] = "caller: " .. clean(s.caller) end
  if str(s.goal) then lines[#lines + 1] = "goal: " .. clean(s.goal) end
  if type(s.denied_tools) == "table" and #s.denied_tools > 0 then
    local d = {}
    for i, t in ipairs(s.denied_tools) do d[i] = clean(t) end
    lines[#lines + 1] = "denied tools: " .. table.concat(d, ", ")
  end
  if str(s.session_id) then lines[#lines + 1] = "session: " .. clean(s.session_id) end
  if int(s.depth) and s.depth > 0 then
    lines[#lines + 1] = "dispatch depth: " .. int(s.depth) .. (int(s.pid) and ", process " .. int(s.pid) or "")
  end
  if str(s.job_id) then lines[#lines + 1] = "job: " .. clean(s.job_id) end
  lines[#lines + 1] = "span: " .. clean(n.id)
  -- One line each: xml() turns newlines into spaces, so join after.
  for i, l in ipairs(lines) do lines[i] = xml(l) end
  return table.concat(lines, "\n")
end

local SVG_STYLE = [[
svg.trace{font-family:system-ui,-apple-system,"Segoe UI","DejaVu Sans",Helvetica,Arial,sans-serif;fill:#1f2937}
.title{font-weight:600}
.summary,.tick text,.legend text{fill:#4b5563}
.tick line{stroke:#e5e7eb}
.axis{stroke:#9ca3af}
.zebra{fill:#f8fafc}
.tree{stroke:#94a3b8;fill:none}
.name.critical{font-weight:600}
.name.failed{fill:#b91c1c}
.name .meta{fill:#9ca3af;font-weight:400}
rect.span[data-status=ok]{fill:#2f9e6e}
rect.span[data-cached=true]{fill:#86c9a9}
rect.span[data-status=running]{fill:#3b82f6;fill-opacity:.75;stroke:#3b82f6;stroke-dasharray:4 2}
rect.span[data-status=error]{fill:#dc2626}
rect.span[data-status=cancelled]{fill:#f59e0b}
rect.span[data-status=refused]{fill:#8b5cf6}
rect.span[data-status=unknown]{fill:#9ca3af}
rect.span[data-critical=true]{stroke:#111827;stroke-width:2px;stroke-dasharray:none}
.barlabel{font-variant-numeric:tabular-nums}
.barlabel.in{fill:#ffffff}
.barlabel.in.light{fill:#1f2937}
.barlabel.out{fill:#374151}
]]

-- The SVG document; opts.header = false leaves out the title and summary
-- (the HTML page shows them itself).
local function svg(root, opts)
  local rows = drawn(root)
  local n = #rows
  local W = math.max(480, int(opts.width) or 1200)
  local rowh = math.max(16, math.min(24, 26 - n // 12))
  local font = rowh >= 20 and 12 or 10
  local cw = font * 0.6 -- average glyph width, for layout estimates
  local maxdepth = 0
  for _, r in ipairs(rows) do maxdepth = math.max(maxdepth, r.depth) end
  -- Label panel: wide enough for the labels, never more than 35% of W.
  local LW_MAX = math.floor(W * 0.35)
  local indent = math.max(6, math.min(16, (LW_MAX - 120) // math.max(1, maxdepth)))
  local need = 0
  for _, r in ipairs(rows) do
    local l = label_of(r.node)
    local extra = r.node.failed and str(r.node.span.error_type) and #r.node.span.error_type + 3 or 0
    need = math.max(need, 12 + math.min(r.depth * indent, LW_MAX - 80) + (width(l) + 2 + extra) * cw)
  end
  local LW = math.max(140, math.min(LW_MAX, math.ceil(need)))
  -- Where a label starts: indented by depth, but always with room for a
  -- few characters (very deep trees stop indenting).
  local function lx(d) return 12 + math.min(d * indent, LW - 80) end
  local X0, X1 = LW + 12, W - 16
  local header = opts.header ~= false
  local top = header and 64 or 8
  local axis_y = top + font + 6
  local Y0 = axis_y + 6
  local H = Y0 + n * rowh + 44
  local T = root.last - root.first
  local function x_of(t)
    if T <= 0 then return X0 end
    return X0 + (t - root.first) / T * (X1 - X0)
  end

  local o = {}
  local function add(s) o[#o + 1] = s end
  add(string.format('<svg xmlns="http://www.w3.org/2000/svg" class="trace" width="%d" height="%d" viewBox="0 0 %d %d" font-size="%d" data-trace-id="%s" data-spans="%d">',
    W, H, W, H, font, xml(root.trace_id or ""), root.spans))
  add("<style>" .. SVG_STYLE .. "</style>")
  add(string.format('<rect x="0" y="0" width="%d" height="%d" fill="#ffffff"/>', W, H))
  if header then
    local task = not root.synthetic and str(root.span.task)
    add(string.format('<text class="title" x="12" y="26" font-size="16">%s</text>',
      task and xml(cut(clean(task), math.floor((W - 24) / 9.6))) or "Delegation tree"))
    local sum = { "trace " .. (root.trace_id and clean(root.trace_id) or "-"),
      string.format("%d span%s", root.spans, root.spans == 1 and "" or "s"),
      M.cost(root.total_cost) .. " total", M.duration(root.wall_ms) .. " wall time" }
    if root.failures > 0 then table.insert(sum, 3, root.failures .. " failed") end
    if root.running_spans > 0 then table.insert(sum, 3, root.running_spans .. " running") end
    add(string.format('<text class="summary" x="12" y="46" font-size="12">%s</text>',
      xml(table.concat(sum, "  ·  "))))
  end

  -- Zebra rows, then the axis: ticks with grid lines down through the rows.
  add('<g class="rows">')
  for i = 1, n, 2 do
    add(string.format('<rect class="zebra" x="0" y="%d" width="%d" height="%d"/>', Y0 + (i - 1) * rowh, W, rowh))
  end
  add("</g>")

  local count = math.max(2, math.floor((X1 - X0) / 110))
  local step = tick_step(T > 0 and T or 1, count)
  add('<g class="axis-ticks">')
  add(string.format('<line class="axis" x1="%d" y1="%d" x2="%d" y2="%d"/>', X0, axis_y + 2, X1, axis_y + 2))
  local k = 0
  while k * step <= (T > 0 and T or 0) + 1e-9 do
    local x = x_of(root.first + k * step)
    add(string.format('<g class="tick"><line x1="%s" y1="%d" x2="%s" y2="%d"/><text x="%s" y="%d" text-anchor="%s">%s</text></g>',
      f1(x), axis_y + 2, f1(x), Y0 + n * rowh, f1(x), axis_y - 2,
      k == 0 and "start" or x > X1 - 24 and "end" or "middle", tick_label(k * step, step)))
    k = k + 1
    if k > 200 then break end
  end
  add("</g>")

  -- The tree guides in the label panel.
  local y_of, depth_of = {}, {}
  for i, r in ipairs(rows) do
    y_of[r.node] = Y0 + (i - 1) * rowh
    depth_of[r.node] = r.depth
  end
  add('<g class="tree">')
  for _, r in ipairs(rows) do
    local p = r.node
    if #p.children > 0 then
      local px = lx(r.depth) + 3
      local py = y_of[p] + rowh * 0.5 + font * 0.5
      for _, c in ipairs(p.children) do
        local cy = y_of[c] + rowh * 0.5
        add(string.format('<path d="M%s %s V%s H%s"/>', f1(px), f1(py), f1(cy),
          f1(lx(depth_of[c]) - 2)))
        py = cy
      end
    end
  end
  add("</g>")

  -- One group per span, holding its bar, its labels and its children's
  -- groups: the SVG nests as the tree does.
  local function node_open(node)
    local y = y_of[node]
    local d = depth_of[node]
    local st = status_of(node)
    local ids = string.format('data-span-id="%s" data-parent-id="%s"%s', xml(node.id),
      xml(node.parent_id or ""), node.orphan and ' data-orphan="true"' or "")
    add(string.format('<g class="node" %s data-depth="%d">', ids, d))
    -- Name in the label panel.
    local room = math.max(4, math.floor((LW - lx(d)) / cw) - 2)
    local name = label_of(node)
    local cls = "name" .. (node.critical and " critical" or "") .. (node.failed and " failed" or "")
    local meta = ""
    if node.failed and str(node.span.error_type) then
      meta = " · " .. clean(node.span.error_type)
    elseif node.orphan then
      meta = " · orphan"
    end
    name = fit(name, math.max(3, room - width(meta)))
    add(string.format('<text class="%s" x="%d" y="%s">%s%s%s</text>', cls,
      lx(d), f1(y + rowh * 0.5 + font * 0.35), node.critical and "★ " or "",
      xml(name), meta ~= "" and '<tspan class="meta">' .. xml(meta) .. "</tspan>" or ""))
    -- The bar.
    local x = x_of(node.start)
    local w = math.max(2, x_of(node.finish) - x)
    local bh = math.floor(rowh * 0.68)
    local by = y + (rowh - bh) / 2
    add(string.format('<rect class="span" %s data-status="%s"%s%s x="%s" y="%s" width="%s" height="%d" rx="3" fill="%s"><title>%s</title></rect>',
      ids, xml(node.status),
      node.critical and ' data-critical="true"' or "",
      node.span.cached == true and ' data-cached="true"' or "",
      f1(x), f1(by), f1(w), bh, COLORS[st] or COLORS.unknown, tooltip(node, root)))
    -- Time and cost: inside the bar when they fit, else beside it.
    local text = M.duration(node.duration_ms) .. " · " .. M.cost(node.own_cost)
    if #node.children > 0 and node.total_cost ~= node.own_cost then
      text = M.duration(node.duration_ms) .. " · " ..
        (node.own_cost > 0 and M.cost(node.own_cost) .. " · " or "") .. "Σ " .. M.cost(node.total_cost)
    end
    local tw = width(text) * cw
    local ty = f1(by + bh / 2 + font * 0.35)
    if tw + 10 <= w then
      local light = st == "cached" or st == "cancelled"
      add(string.format('<text class="barlabel in%s" x="%s" y="%s">%s</text>', light and " light" or "", f1(x + 5), ty, xml(text)))
    elseif x + w + 6 + tw <= W - 2 then
      add(string.format('<text class="barlabel out" x="%s" y="%s">%s</text>', f1(x + w + 5), ty, xml(text)))
    else
      add(string.format('<text class="barlabel out" x="%s" y="%s" text-anchor="end">%s</text>', f1(x - 5), ty, xml(text)))
    end
  end
  add('<g class="spans">')
  -- Preorder with explicit closing of groups (iterative: traces can be deep).
  local open = {}
  for _, r in ipairs(rows) do
    while #open > 0 and open[#open] >= r.depth do
      add("</g>")
      open[#open] = nil
    end
    node_open(r.node)
    open[#open + 1] = r.depth
  end
  for _ = 1, #open do add("</g>") end
  add("</g>")

  -- Legend.
  local ly = Y0 + n * rowh + 24
  add('<g class="legend" font-size="11">')
  local lx = 12
  for _, k2 in ipairs({ "ok", "cached", "running", "error", "cancelled", "refused" }) do
    add(string.format('<rect x="%d" y="%d" width="12" height="12" rx="2" fill="%s"/><text x="%d" y="%d">%s</text>',
      lx, ly - 10, COLORS[k2], lx + 16, ly, k2))
    lx = lx + 16 + #k2 * 7 + 14
  end
  add(string.format('<rect x="%d" y="%d" width="22" height="12" rx="2" fill="#ffffff" stroke="#111827" stroke-width="2"/><text x="%d" y="%d">★ critical path</text>',
    lx, ly - 10, lx + 28, ly))
  add(string.format('<text x="%d" y="%d">Σ: cost with everything below</text>', lx + 130, ly))
  add("</g>")
  add("</svg>")
  return table.concat(o, "\n")
end

--- A self-contained SVG timeline of the tree: one bar (<rect class="span"
--- data-span-id data-parent-id>) per span on the trace's time axis, rows in
--- tree order indented under their parent (each span's <g class="node">
--- holds its children's), coloured by status, time and cost on or beside
--- the bar, the critical path outlined, details in a <title> tooltip.
--- opts.width (pixels, default 1200), opts.now.
---@return string
function M.svg(root, opts)
  opts = opts or {}
  root = prepare(root, opts)
  return '<?xml version="1.0" encoding="UTF-8"?>\n' .. svg(root, opts) .. "\n"
end

------------------------------------------------------------------------
-- HTML
------------------------------------------------------------------------

local HTML_STYLE = [[
body{margin:0;background:#f1f5f9;color:#111827;font:14px/1.4 system-ui,-apple-system,"Segoe UI","DejaVu Sans",Helvetica,Arial,sans-serif}
.main{max-width:1240px;margin:0 auto;padding:20px}
h1{font-size:19px;margin:0 0 4px;font-weight:600}
.id{color:#6b7280;font:12px ui-monospace,"DejaVu Sans Mono",monospace;margin-bottom:14px}
.cards{display:flex;gap:12px;flex-wrap:wrap;margin-bottom:14px}
.card{background:#fff;border-radius:8px;padding:10px 16px;box-shadow:0 1px 2px rgba(0,0,0,.08);min-width:120px}
.card .v{font-size:22px;font-weight:600;font-variant-numeric:tabular-nums}
.card .k{font-size:12px;color:#6b7280;text-transform:uppercase;letter-spacing:.04em}
.card.bad .v{color:#dc2626}
.panel{background:#fff;border-radius:8px;box-shadow:0 1px 2px rgba(0,0,0,.08);overflow:hidden}
.panel svg{display:block;width:100%;height:auto}
.card .v.name{font-size:18px;line-height:32px;max-width:260px;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
#detail{position:sticky;top:0;z-index:1;background:#fffbeb;border:1px solid #fde68a;border-radius:8px;padding:8px 12px;margin-bottom:12px;white-space:pre-wrap;font:12px/1.45 ui-monospace,"DejaVu Sans Mono",monospace;color:#374151;min-height:1.4em}
svg.hovering rect.span{opacity:.35}
svg.hovering g.hover rect.span{opacity:1}
table{border-collapse:collapse;margin-top:14px;background:#fff;border-radius:8px;box-shadow:0 1px 2px rgba(0,0,0,.08);font-size:13px}
th,td{text-align:left;padding:6px 12px;border-bottom:1px solid #f1f5f9;vertical-align:top}
th{color:#6b7280;font-weight:500}
td.failed{color:#b91c1c;font-weight:600}
]]

local HTML_SCRIPT = [==[
//<![CDATA[
(function () {
  var svg = document.querySelector("svg.trace"), detail = document.getElementById("detail");
  if (!svg || !detail) return;
  var rest = detail.textContent;
  svg.querySelectorAll("g.node").forEach(function (g) {
    var bar = g.querySelector(":scope > rect.span");
    if (!bar) return;
    var title = bar.querySelector("title");
    g.addEventListener("mouseover", function (e) {
      if (e.target.closest("g.node") !== g) return;
      svg.classList.add("hovering"); g.classList.add("hover");
      detail.textContent = title ? title.textContent : "";
    });
    g.addEventListener("mouseout", function () {
      g.classList.remove("hover"); svg.classList.remove("hovering");
      detail.textContent = rest;
    });
  });
})();
//]]>
]==]

--- A self-contained HTML page (inline CSS and SVG, a few lines of inline
--- script for hover details; nothing fetched): the summary (total cost,
--- wall time, spans, failures), the timeline and the failed spans.
--- opts as for svg.
---@return string
function M.html(root, opts)
  opts = opts or {}
  root = prepare(root, opts)
  local o = {}
  local function add(s) o[#o + 1] = s end
  local function card(k, v, bad, name)
    add(string.format('<div class="card%s"><div class="v%s">%s</div><div class="k">%s</div></div>',
      bad and " bad" or "", name and " name" or "", xml(v), xml(k)))
  end
  local id = root.trace_id and xml(root.trace_id) or "(no trace id)"
  add("<!DOCTYPE html>")
  add('<html lang="en"><head><meta charset="utf-8"/>')
  add('<meta name="viewport" content="width=device-width, initial-scale=1"/>')
  add("<title>Trace " .. id .. "</title>")
  add("<style>" .. HTML_STYLE .. "</style></head><body><div class=\"main\">")
  -- The root's task as the title; the trace id, the root and the start
  -- time (UTC) under it.
  local task = not root.synthetic and str(root.span.task)
  add("<h1>" .. (task and xml(cut(clean(task), 140)) or "Delegation tree") .. "</h1>")
  local sub = { "trace " .. id }
  if not root.synthetic then sub[#sub + 1] = xml(label_of(root)) end
  if root.spans > 0 then sub[#sub + 1] = os.date("!started %Y-%m-%d %H:%M:%S UTC", math.floor(root.first)) end
  add('<div class="id">' .. table.concat(sub, " · ") .. "</div>")
  add('<div class="cards">')
  card("total cost", M.cost(root.total_cost))
  card("wall time", M.duration(root.wall_ms))
  card("spans", tostring(root.spans))
  card("failures", tostring(root.failures), root.failures > 0)
  if root.running_spans > 0 then card("running", tostring(root.running_spans)) end
  local top
  for _, r in ipairs(drawn(root)) do
    if r.node.own_cost > 0 and (not top or r.node.own_cost > top.own_cost) then top = r.node end
  end
  if top then card("costliest: " .. M.cost(top.own_cost), label_of(top), false, true) end
  add("</div>")
  add('<div id="detail">Hover a bar for its details. ★ marks the critical path: the chain of spans that set the end time.</div>')
  add('<div class="panel">')
  add(svg(root, { width = opts.width, header = false }))
  add("</div>")
  local failed = {}
  for _, r in ipairs(drawn(root)) do if r.node.failed then failed[#failed + 1] = r.node end end
  if #failed > 0 then
    add("<table><thead><tr><th>failed span</th><th>status</th><th>time</th><th>task</th></tr></thead><tbody>")
    for _, n in ipairs(failed) do
      local st = n.status .. (str(n.span.error_type) and " (" .. n.span.error_type .. ")" or "")
      add(string.format('<tr data-span-id="%s"><td class="failed">%s</td><td>%s</td><td>%s</td><td>%s</td></tr>',
        xml(n.id), xml(label_of(n)), xml(st), xml(M.duration(n.duration_ms)),
        xml(cut(clean(n.span.task or ""), 160))))
    end
    add("</tbody></table>")
  end
  add("</div><script>" .. HTML_SCRIPT .. "</script></body></html>")
  return table.concat(o, "\n") .. "\n"
end

return M
