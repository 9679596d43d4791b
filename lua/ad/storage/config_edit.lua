--- Changes to agents.yaml that keep the file as the person wrote it.
---
--- A change is the difference between two documents (the config as it was
--- loaded and as it is to be saved, both in the shape config.to_document
--- writes). Only the entries that differ are rewritten, each at the place
--- the outline of the text (core.yaml.outline) says it is: every other
--- byte, comments, blank lines, quoting, key order, keys this version does
--- not know and values such as `~/project`, stays as it was.
---
--- Granularity: a field of an agent, a group or the settings is replaced,
--- added (after the entry's last line) or deleted (its lines) on its own;
--- a block list that loses items or gains items at its end (members,
--- allowed_tools, ...) has those item lines deleted or appended; any other
--- change to a list replaces it whole. An entry written in flow style ({...}) is rewritten
--- whole, as is a section that is empty (`agents:` or `agents: {}`).
local core = require "ad.core"

local M = {}

local function ordered(t, keys)
  return setmetatable(t, { __order = keys })
end

--- Deep equality of plain values (tables compared by content).
function M.equal(a, b)
  if type(a) ~= "table" or type(b) ~= "table" then return a == b end
  for k, v in pairs(a) do
    if not M.equal(v, b[k]) then return false end
  end
  for k in pairs(b) do
    if a[k] == nil then return false end
  end
  return true
end

local function keys_of(t)
  local mt = getmetatable(t)
  local out, seen = {}, {}
  if mt and mt.__order then
    for _, k in ipairs(mt.__order) do
      if t[k] ~= nil and not seen[k] then out[#out + 1] = k; seen[k] = true end
    end
  end
  local rest = {}
  for k in pairs(t) do if not seen[k] then rest[#rest + 1] = k end end
  table.sort(rest)
  for _, k in ipairs(rest) do out[#out + 1] = k end
  return out
end

-- "key: value" as YAML text for the given indent: no trailing newline,
-- lines after the first indented by `indent` spaces (every line of the
-- emitter's output shifts together, so the structure is unchanged).
local function render(key, value, indent)
  local text = assert(core.yaml.dump(ordered({ [key] = value }, { key })))
  text = text:gsub("%.%.%.\n$", ""):gsub("\n$", "")
  local pad = string.rep(" ", indent)
  return (text:gsub("\n", "\n" .. pad))
end

-- Line breaks are counted as libyaml counts them (its marks, and so the
-- outline, follow them): "\r\n", "\r" and "\n", and in UTF-8 NEL (U+0085),
-- LS (U+2028) and PS (U+2029). A file may use "\r" alone: a scalar or
-- an entry then ends at a "\r" that a search for "\n" would step over.

-- The length of the line break whose last byte is text[i] (1-based), or 0.
local function break_ending(text, i)
  local c = text:byte(i)
  if c == 10 then return text:byte(i - 1) == 13 and 2 or 1 end
  if c == 13 then return 1 end
  if c == 0x85 and text:byte(i - 1) == 0xC2 then return 2 end
  if (c == 0xA8 or c == 0xA9) and text:byte(i - 1) == 0x80 and text:byte(i - 2) == 0xE2 then
    return 3
  end
  return 0
end

-- 1-based index of the last byte of the first line break at or after i,
-- or nil.
local function next_break(text, i)
  while true do
    local s, _, c = text:find("([\r\n\194\226])", i)
    if not s then return nil end
    if c == "\n" then return s end
    if c == "\r" then return text:byte(s + 1) == 10 and s + 1 or s end
    if c == "\194" and text:byte(s + 1) == 0x85 then return s + 1 end
    if c == "\226" and text:byte(s + 1) == 0x80 and
       (text:byte(s + 2) == 0xA8 or text:byte(s + 2) == 0xA9) then
      return s + 2
    end
    i = s + 1
  end
end

local function line_start(text, pos) -- pos: 0-based; returns 0-based
  local s = pos
  while s > 0 and break_ending(text, s) == 0 do s = s - 1 end
  return s
end

-- 0-based offset just past the line break ending the line that holds the
-- byte before `pos` (content ends at pos, exclusive).
local function line_end(text, pos)
  if pos > 0 and break_ending(text, pos) > 0 then
    -- The "\r" of a "\r\n" is not the end of the break.
    return (text:byte(pos) == 13 and text:byte(pos + 1) == 10) and pos + 1 or pos
  end
  return next_break(text, pos + 1) or #text
end

-- Does the text end in a line break (or is it empty)?
local function ends_line(text, at)
  return at == 0 or break_ending(text, at) > 0
end

-- The line break the file uses (its first one); "\n" when it has none.
-- Inserted lines use it, so that a file with "\r\n" or "\r" keeps them.
local function newline_of(text)
  local e = next_break(text, 1)
  if not e then return "\n" end
  local c = text:sub(e, e)
  if c == "\n" then return text:sub(e - 1, e - 1) == "\r" and "\r\n" or "\n" end
  return c == "\r" and "\r" or "\n"
end

local function column(text, pos)
  return pos - line_start(text, pos)
end

-- Only blanks (or a "- " of the enclosing sequence item) before pos?
local function first_on_line(text, pos)
  return text:sub(line_start(text, pos) + 1, pos):match("^[ \t]*$") ~= nil
end

-- The end of the content before `stop`: a block scalar (|, >) ends after
-- its trailing line breaks and blank lines, which belong to what follows.
local function trim(text, stop)
  while stop > 0 do
    local n = text:sub(stop, stop):match("[ \t]") and 1 or break_ending(text, stop)
    if n == 0 then break end
    stop = stop - n
  end
  return stop
end

-- Where a field's content ends: its value's end, or just past the ':' for
-- a key with no value.
local function field_stop(text, e)
  if e.value.stop >= 0 then return trim(text, e.value.stop) end
  local colon = text:find(":", e.kstop + 1, true)
  return colon or e.kstop
end

local edit_map

-- A block list whose new value is the old one with items taken out and/or
-- added at the end (a group losing or gaining a member): the removed
-- items' lines are deleted and the new ones appended, so the comments of
-- the other items stay. false for any other change.
local function edit_list(text, v, old, new, edits)
  if v.kind ~= "seq" or v.flow or #v.items == 0 or #v.items ~= #old then return false end
  local keep, j = {}, 1
  for i = 1, #old do
    if j <= #new and M.equal(old[i], new[j]) then keep[i] = true; j = j + 1 end
  end
  local out, dash, last = {}, nil, 0
  for i, it in ipairs(v.items) do
    local ls = line_start(text, it.start)
    local prefix = text:sub(ls + 1, it.start)
    if it.stop < 0 or not prefix:match("^[ \t]*%-[ \t]*$") then return false end
    dash = dash or #prefix:match("^[ \t]*")
    last = line_end(text, trim(text, it.stop))
    if not keep[i] then out[#out + 1] = { ls, last, "" } end
  end
  if j <= #new then
    local tail = {}
    for k = j, #new do tail[#tail + 1] = new[k] end
    local text_tail = assert(core.yaml.dump(setmetatable(tail, getmetatable(new))))
    local pad = string.rep(" ", dash)
    text_tail = pad .. text_tail:gsub("\n$", ""):gsub("\n", "\n" .. pad) .. "\n"
    local pre = ends_line(text, last) and "" or "\n"
    out[#out + 1] = { last, last, pre .. text_tail }
  end
  for _, x in ipairs(out) do edits[#edits + 1] = x end
  return true
end

-- Edits turning field `k` of block map `node` from `old` into `new`
-- (either may be nil), appended to `edits`. Returns false when this level
-- cannot be edited in place (the caller rewrites the enclosing entry).
local function edit_field(text, node, k, old, new, depth, edits)
  if M.equal(old, new) then return true end
  local e = node.keys[k]
  if e and e.n > 1 then return false end -- duplicate key: rewrite the entry
  if not e then
    if new == nil then return true end
    local indent = node.indent
    local at = line_end(text, trim(text, node.stop))
    local pre = ends_line(text, at) and "" or "\n"
    edits[#edits + 1] = { at, at, pre .. string.rep(" ", indent) ..
      render(k, new, indent) .. "\n" }
    return true
  end
  if new == nil then
    if not first_on_line(text, e.kstart) then return false end
    edits[#edits + 1] = { line_start(text, e.kstart),
                          line_end(text, field_stop(text, e)), "" }
    return true
  end
  local v = e.value
  if type(old) == "table" and type(new) == "table" and edit_list(text, v, old, new, edits) then
    return true
  end
  if depth > 0 and type(old) == "table" and type(new) == "table" and
     v.kind == "map" and not v.flow and #v.order > 0 then
    local sub = {}
    if edit_map(text, v, old, new, depth - 1, sub) then
      for _, x in ipairs(sub) do edits[#edits + 1] = x end
      return true
    end
  end
  local stop = field_stop(text, e)
  if (v.kind == "map" or v.kind == "seq") and not v.flow then
    -- A comment at the end of a block list or mapping was about its last
    -- item, which may be gone: it goes with the value.
    stop = line_end(text, stop)
    stop = stop - break_ending(text, stop)
  end
  edits[#edits + 1] = { e.kstart, stop, render(k, new, column(text, e.kstart)) }
  return true
end

-- Edits turning block map `node` from `old` into `new`; `depth` is how
-- many levels below this one are still edited field by field.
function edit_map(text, node, old, new, depth, edits)
  local first = node.keys[node.order[1]]
  node.indent = column(text, first.kstart)
  for _, k in ipairs(keys_of(old)) do
    if new[k] == nil and not edit_field(text, node, k, old[k], nil, depth, edits) then
      return false
    end
  end
  for _, k in ipairs(keys_of(new)) do
    if not edit_field(text, node, k, old[k], new[k], depth, edits) then return false end
  end
  return true
end

-- The levels edited field by field: top -> section -> entry -> field.
local DEPTH = 2

--- The text of `old_doc` changed into `new_doc`, keeping every byte of
--- `text` that is not part of a changed entry. nil, reason when the text
--- cannot be edited in place (its top level is not a block mapping).
function M.apply(text, old_doc, new_doc)
  -- A byte order mark is not counted in libyaml's marks: edit without it.
  if text:sub(1, 3) == "\239\187\191" then
    local out, why = M.apply(text:sub(4), old_doc, new_doc)
    return out and ("\239\187\191" .. out), why
  end
  local top, err = core.yaml.outline(text)
  if err then return nil, err end
  local edits = {}
  if top == nil then
    -- Only comments and blank lines: the sections go after them.
    local parts = {}
    for _, k in ipairs(keys_of(new_doc)) do
      if not M.equal(old_doc[k], new_doc[k]) then parts[#parts + 1] = render(k, new_doc[k], 0) .. "\n" end
    end
    if #parts == 0 then return text end
    local pre = ends_line(text, #text) and "" or "\n"
    return text .. (pre .. table.concat(parts)):gsub("\n", newline_of(text))
  end
  if top.kind ~= "map" or top.flow or #top.order == 0 then
    return nil, "the top level is not a block mapping"
  end
  if not edit_map(text, top, old_doc, new_doc, DEPTH, edits) then
    return nil, "a top-level key appears more than once"
  end
  -- Last first, so earlier offsets stay valid; two insertions at one
  -- place keep the order they were made in.
  for i, x in ipairs(edits) do x.seq = i end
  table.sort(edits, function(a, b) return a[1] > b[1] or (a[1] == b[1] and a.seq > b.seq) end)
  local nl = newline_of(text)
  for _, x in ipairs(edits) do
    local ins = nl == "\n" and x[3] or x[3]:gsub("\n", nl)
    text = text:sub(1, x[1]) .. ins .. text:sub(x[2] + 1)
  end
  return text
end

return M
