--- Drawing a delegation tree from its span records (ad.storage.traces).
--- A minimal version: tree(), a text tree, and plain SVG/HTML timelines.
--- tree(spans) -> root; text(root, {width=, color=}); svg(root); html(root).
local util = require "ad.infra.util"

local M = {}

--- The tree of spans: {span=, children={}} nodes under a root node whose
--- span is nil when there is not exactly one top span.
function M.tree(spans)
  local nodes, roots = {}, {}
  for _, s in ipairs(spans) do nodes[s.span_id] = { span = s, children = {} } end
  for _, s in ipairs(spans) do
    local parent = type(s.parent_id) == "string" and nodes[s.parent_id]
    if parent and parent ~= nodes[s.span_id] then
      table.insert(parent.children, nodes[s.span_id])
    else
      roots[#roots + 1] = nodes[s.span_id]
    end
  end
  local function by_start(a, b) return (a.span.start or 0) < (b.span.start or 0) end
  for _, n in pairs(nodes) do table.sort(n.children, by_start) end
  table.sort(roots, by_start)
  if #roots == 1 then return roots[1] end
  return { children = roots }
end

local function label(s)
  local name = type(s.agent) == "string" and s.agent or s.kind
  local cost = type(s.cost_usd) == "number" and s.cost_usd > 0 and string.format(" $%.4f", s.cost_usd) or ""
  local ms = math.tointeger(s.duration_ms)
  local dur = ms and string.format(" %.1fs", ms / 1000) or ""
  return string.format("%s [%s] %s%s%s%s", name, s.kind, s.status, cost, dur,
    type(s.error_type) == "string" and (" (" .. s.error_type .. ")") or "")
end

--- The tree as text, one line per span, drawn with box characters.
function M.text(root, opts)
  local width = opts and opts.width or 100
  local lines = {}
  local function walk(n, prefix, last, top)
    if n.span then
      local line = top and "" or (prefix .. (last and "└─ " or "├─ "))
      lines[#lines + 1] = util.cut(line .. label(n.span) .. ": " ..
        (n.span.task or ""):gsub("%s+", " "), width)
    end
    local inner = (top or not n.span) and "" or (prefix .. (last and "   " or "│  "))
    for i, c in ipairs(n.children) do walk(c, inner, i == #n.children, not n.span and top) end
  end
  walk(root, "", true, true)
  return table.concat(lines, "\n")
end

local function esc(s)
  return (tostring(s):gsub("[&<>\"]", { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;" }))
end

--- A timeline: one bar (rect) per span, nested rows in tree order.
function M.svg(root)
  local rows, t0, t1 = {}, math.huge, -math.huge
  local function walk(n, depth)
    if n.span then
      rows[#rows + 1] = { n.span, depth }
      t0 = math.min(t0, n.span.start or t0)
      t1 = math.max(t1, n.span["end"] or n.span.start or t1)
    end
    for _, c in ipairs(n.children) do walk(c, n.span and depth + 1 or depth) end
  end
  walk(root, 0)
  if t1 <= t0 then t1 = t0 + 1 end
  local W, H = 1000, 22
  local out = { string.format('<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d">',
    W + 320, #rows * H + 10) }
  local colors = { ok = "#4c9a2a", error = "#c0392b", refused = "#e67e22", cancelled = "#7f8c8d", running = "#2980b9" }
  for i, r in ipairs(rows) do
    local s, d = r[1], r[2]
    local x = 310 + (s.start - t0) / (t1 - t0) * W
    local w = math.max(2, (((s["end"] or t1) - s.start) / (t1 - t0)) * W)
    out[#out + 1] = string.format('<g data-span="%s" data-parent="%s"><text x="%d" y="%d" font-size="12">%s</text>' ..
      '<rect x="%.1f" y="%d" width="%.1f" height="16" fill="%s"><title>%s</title></rect></g>',
      esc(s.span_id), esc(type(s.parent_id) == "string" and s.parent_id or ""), 4 + d * 12, (i - 1) * H + 17,
      esc(util.cut(label(s), 45)), x, (i - 1) * H + 5, w, colors[s.status] or "#999", esc(label(s)))
  end
  out[#out + 1] = "</svg>"
  return table.concat(out, "\n") .. "\n"
end

--- A self-contained page holding the SVG timeline.
function M.html(root)
  return "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>agent-dispatch trace</title></head><body>\n" ..
    M.svg(root) .. "<pre>" .. esc(M.text(root, { width = 200 })) .. "</pre>\n</body></html>\n"
end

return M
