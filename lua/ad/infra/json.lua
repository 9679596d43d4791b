--- JSON for the policy layer: lua-cjson does all parsing and all scalar
--- encoding; this module only decides container shapes and key order.
---
--- Why not plain cjson.encode: Debian's lua-cjson 2.1.0 encodes an empty
--- Lua table as {} and emits object keys in hash order. Tool results need
--- empty arrays as [] (tools, required, denied_tools, content) and a stable
--- key order. The one mechanism: a table whose metatable is core.array_mt
--- is an array (json.array marks one); a table with a metatable field
--- __order lists its leading keys (json.object); any other table is an
--- object with sorted keys, unless it is a non-empty sequence.
local core = require "ad.core"
local cjson = require "cjson"

local M = {}

M.null = cjson.null
local ARRAY = core.array_mt
local RAW = { __name = "json.raw" }

--- A value emitted verbatim (already-valid JSON text, e.g. a request id
--- echoed digit for digit).
function M.raw(text)
  return setmetatable({ text }, RAW)
end
local encode_scalar = cjson.encode
local find = string.find
local concat, type, next, getmetatable, rawlen =
  table.concat, type, next, getmetatable, rawlen

--- Marks t (or a new table) as a JSON array.
---@param t table|nil
---@return table
function M.array(t)
  return setmetatable(t or {}, ARRAY)
end

--- Marks t as an object whose keys come out in the given order.
---@param t table
---@param order string[]
---@return table
function M.object(t, order)
  return setmetatable(t, { __order = order })
end

--- Adds keys at the end of t's key order (json.object), in a copy of that
--- order: tables of one kind share theirs (jobs.KEYS, result.KEYS), and
--- one reply's extra keys must not become every later table's. Returns t.
function M.append_keys(t, ...)
  local mt = getmetatable(t)
  local from = mt and mt.__order or {}
  local order = table.move(from, 1, #from, 1, {})
  for i = 1, select("#", ...) do order[#order + 1] = select(i, ...) end
  return setmetatable(t, { __order = order })
end

function M.is_array(t)
  local mt = getmetatable(t)
  if mt == ARRAY then return true end
  if mt and mt.__order then return false end
  local n = rawlen(t)
  if n == 0 then return false end
  local count = 0
  for _ in next, t do count = count + 1 end
  return count == n
end

--- Encodes v as compact JSON text. Strings that are not valid UTF-8 are
--- repaired (U+FFFD) so the transport never carries invalid UTF-8. The
--- rules above, in C (src/bind/json_encode.c: every reply passes here);
--- numbers are formatted by lua-cjson, strings escaped as lua-cjson does
--- but "/" is not escaped, nesting deeper than 200 is an error (a cycle).
---@return string
M.encode, M.encode_fields, M.encode_text = core.json.encoder(RAW, encode_scalar, cjson.null)

--- M.encode_text(v): M.encode(M.encode(v)), the JSON string whose text is
--- v encoded (a tool call's reply carries its result so), in one pass.

--- M.encode_fields(t, keys): the object of t's members named in keys (an
--- array of strings), in that order, nil ones left out, every other
--- member of t ignored; the values encoded as M.encode encodes them. For
--- records of fixed fields: no scan of t, no sort. (Span lines are now
--- written in C, src/span.c; the trace tests keep this as the reference
--- those lines must equal byte for byte, and Lua code may use it.)

-- Strict numbers: Infinity, NaN and 0x10 are not JSON. (cjson still reads
-- 1e309 as inf; M.decode refuses non-finite results itself.)
cjson.decode_invalid_numbers(false)

--- text with every \uXXXX escape of a lone UTF-16 surrogate (one that is
--- not half of a high+low pair) replaced by \ufffd, or nil when it has
--- none. cjson rejects lone surrogates, yet the claude CLI writes them when
--- a text is cut inside a pair; this only rewrites escapes, the parsing
--- stays cjson's. An escape is a 'u' after an odd run of backslashes.
function M.fix_surrogates(text)
  if not text:find("\\u[dD][89a-fA-F]") then return nil end
  local out, pos, i = {}, 1, 1
  while true do
    local s, e, bs, hex = text:find("(\\+)u(%x%x%x%x)", i)
    if not s then break end
    i = e + 1
    local cp = #bs % 2 == 1 and tonumber(hex, 16) or 0
    if cp >= 0xD800 and cp <= 0xDBFF then
      local lo = tonumber(text:match("^\\u(%x%x%x%x)", e + 1) or "", 16)
      if lo and lo >= 0xDC00 and lo <= 0xDFFF then
        i = e + 7 -- a valid pair: keep both halves
        cp = 0
      end
    end
    if cp >= 0xD800 and cp <= 0xDFFF then
      out[#out + 1] = text:sub(pos, e - 5)
      out[#out + 1] = "ufffd"
      pos = e + 1
    end
  end
  if pos == 1 then return nil end
  out[#out + 1] = text:sub(pos)
  return concat(out)
end

-- Is any number in v (a decoded value) inf or nan?
local function non_finite(v, depth)
  if type(v) == "number" then return v ~= v or v == math.huge or v == -math.huge end
  if type(v) ~= "table" or depth > 1000 then return false end
  for k, x in next, v do
    if non_finite(x, depth + 1) or (type(k) == "number" and non_finite(k, depth + 1)) then
      return true
    end
  end
  return false
end

-- Can text hold a number that overflows a double (an exponent of three
-- digits, or a run of more than 308 digits)? Cheap, and false positives
-- only cost a walk of the decoded value. Every request and every line of
-- a child's output passes here, so the scan is C's (core.json.may_overflow:
-- Lua's matcher tried a class pattern at every byte).
local may_overflow = core.json.may_overflow

--- Decodes text; returns value or nil, message. JSON null becomes json.null
--- inside containers and nil at the top level. Strict: non-finite numbers
--- (1e309) are errors; lone surrogate escapes become U+FFFD.
function M.decode(text)
  -- cjson ends the text at a NUL byte and accepts '{...}\0anything';
  -- JSON has no raw NUL anywhere, and what follows it must not be read
  -- as part of the request (core.json.raw_member scans the whole line).
  if find(text, "\0", 1, true) then
    return nil, "NUL byte in JSON text"
  end
  local ok, v = pcall(cjson.decode, text)
  if not ok and tostring(v):find("invalid unicode escape", 1, true) then
    local fixed = M.fix_surrogates(text)
    if fixed then ok, v = pcall(cjson.decode, fixed) end
  end
  if not ok then
    return nil, (tostring(v):gsub("^.-: ", ""))
  end
  if may_overflow(text) and non_finite(v, 0) then
    return nil, "number out of range (JSON numbers must be finite)"
  end
  if v == cjson.null then return nil end
  return v
end

local EMPTY = "\0ad[]" -- (core.json.mark_empty_arrays' mark, decoded)

-- Turns each marked table of v back into an empty array (json.array),
-- however deep; returns v, or the array when v itself is one.
local function unmark(v)
  local function marked(t)
    return type(t) == "table" and t[1] == EMPTY and rawlen(t) == 1 and next(t, 1) == nil
  end
  if marked(v) then return M.array() end
  if type(v) ~= "table" then return v end
  local stack = { v }
  while #stack > 0 do
    local t = table.remove(stack)
    for k, x in pairs(t) do
      if marked(x) then
        t[k] = M.array() -- (assigning an existing key during pairs is allowed)
      elseif type(x) == "table" then
        stack[#stack + 1] = x
      end
    end
  end
  return v
end

--- M.decode, with every empty array of text kept an array (json.array):
--- lua-cjson decodes [] and {} alike, and a value given back (an answer's
--- parsed_result or structured_output, a script's data) must keep its
--- shape. Costs a scan only when text holds an empty array.
function M.decode_shaped(text)
  if type(text) ~= "string" or not find(text, "%[%s*%]") then return M.decode(text) end
  local marked = core.json.mark_empty_arrays(text)
  if not marked then return M.decode(text) end
  local v, err = M.decode(marked)
  if v == nil then return nil, err end
  return unmark(v)
end

--- The top-level member key of JSON object text, decoded as
--- M.decode_shaped decodes (nil when absent or null).
function M.member_shaped(text, key)
  local raw = core.json.raw_member(text, key)
  return raw and M.decode_shaped(raw)
end

--- Deep copy with JSON nulls turned into nil (for values read from JSON
--- that policy code treats as Lua data).
function M.denull(v)
  if v == cjson.null then return nil end
  if type(v) ~= "table" then return v end
  local r = {}
  for k, x in pairs(v) do r[k] = M.denull(x) end
  return setmetatable(r, getmetatable(v))
end

--- The JSON type of a decoded value: "null", "boolean", "number",
--- "string", "array" or "object" (for messages about wrong types).
function M.type_name(v)
  if v == nil or v == cjson.null then return "null" end
  local tv = type(v)
  if tv == "table" then return M.is_array(v) and "array" or "object" end
  return tv
end

--- A decoded value as messages name it: its JSON type, with the value for
--- scalars (number 5, number 1.5, string 'abc', boolean true), "an array"
--- or "an object" for containers. cjson
--- decodes every number as a float; integral ones print as JSON wrote them.
function M.describe(v)
  local t = M.type_name(v)
  if t == "array" or t == "object" then
    -- An empty [] and {} decode alike (cjson 2.1.0 marks neither).
    if next(v) == nil and getmetatable(v) == nil then return "an empty array or object" end
    return "an " .. t
  end
  if t == "number" then
    local i = math.tointeger(v)
    return "number " .. (i and tostring(i) or encode_scalar(v))
  end
  if t == "string" then
    local util = require "ad.infra.util"
    return "string " .. util.repr(util.cut(v, 40))
  end
  if t == "boolean" then return "boolean " .. tostring(v) end
  return t
end

return M
