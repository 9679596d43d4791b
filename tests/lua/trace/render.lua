-- Renders the trace fixtures for trace_view_xml.sh: the fan-out fixture
-- (fanout.jsonl) and generated trees of 1, 20 and 200 spans, each as SVG
-- and HTML (and as text), with the list of the span ids they hold.
-- Run: agent-dispatch run tests/lua/trace/render.lua OUTDIR
-- To look at OUTDIR/fanout.html as a picture (headless Chromium):
--   chromium --headless --no-sandbox --hide-scrollbars \
--     --screenshot=fanout.png --window-size=1200,580 file://OUTDIR/fanout.html
-- (docs/trace.png is a real trace instead: tests/real/trace_shot.js.)
local here = arg[0]:match("(.*/)") or "./"
local out = assert(arg[1], "usage: render.lua OUTDIR")
local tv = require "ad.domain.trace_view"
local json = require "ad.infra.json"
local gen = dofile(here .. "gen.lua")

local function write(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
end

local function render(name, spans, now)
  local root = tv.tree(spans, now)
  write(out .. "/" .. name .. ".svg", tv.svg(root))
  write(out .. "/" .. name .. ".html", tv.html(root))
  write(out .. "/" .. name .. ".txt", tv.text(root, { width = 100 }))
  local ids = {}
  for i, s in ipairs(spans) do ids[i] = s.span_id end
  table.sort(ids)
  write(out .. "/" .. name .. ".ids", table.concat(ids, "\n") .. "\n")
end

local fanout = {}
for line in io.lines(here .. "fanout.jsonl") do fanout[#fanout + 1] = json.decode(line) end
render("fanout", fanout)
for _, n in ipairs({ 1, 20, 200 }) do
  local spans, now = gen(n, n)
  render("gen" .. n, spans, now)
end
