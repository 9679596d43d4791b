-- ad.infra.json's encoder (C, src/bind/json_encode.c) gives the very bytes
-- of the encoder it replaced, written in Lua over lua-cjson: that one is
-- kept here as the reference, and both encode the same values.
-- Run: agent-dispatch run tests/lua/json_encode_test.lua
local here = arg[0]:match("(.*/)") or "./"
local tap = dofile(here .. "tap.lua")
local test, eq, ok = tap.test, tap.eq, tap.ok
local core = require "ad.core"
local cjson = require "cjson"
local json = require "ad.infra.json"

-- The reference: ad.infra.json's encoder as it was in Lua.
local ref
do
  local RAW = getmetatable(json.raw("1"))
  local encode_scalar, sort = cjson.encode, table.sort
  local encode
  local function encode_object(t, out, depth)
    local keys, seen, n = {}, {}, 0
    local mt = getmetatable(t)
    if mt and mt.__order then
      for _, k in ipairs(mt.__order) do
        if t[k] ~= nil and not seen[k] then
          n = n + 1; keys[n] = k; seen[k] = true
        end
      end
    end
    local rest, m = {}, 0
    for k in next, t do
      if not seen[k] then
        if type(k) ~= "string" then k = tostring(k) end
        m = m + 1; rest[m] = k
      end
    end
    sort(rest)
    for i = 1, m do n = n + 1; keys[n] = rest[i] end
    out[#out + 1] = "{"
    for i = 1, n do
      local k = keys[i]
      if i > 1 then out[#out + 1] = "," end
      out[#out + 1] = encode_scalar(k)
      out[#out + 1] = ":"
      local v = t[k]
      if v == nil then v = t[tonumber(k)] end
      encode(v, out, depth + 1)
    end
    out[#out + 1] = "}"
  end
  encode = function(v, out, depth)
    if depth > 200 then error("json: value nested too deeply (a cycle?)") end
    local tv = type(v)
    if tv == "table" then
      if getmetatable(v) == RAW then
        out[#out + 1] = v[1]
      elseif json.is_array(v) then
        out[#out + 1] = "["
        for i = 1, rawlen(v) do
          if i > 1 then out[#out + 1] = "," end
          encode(v[i], out, depth + 1)
        end
        out[#out + 1] = "]"
      else
        encode_object(v, out, depth)
      end
    elseif tv == "number" then
      if v ~= v or v == math.huge or v == -math.huge then
        out[#out + 1] = "null"
      else
        out[#out + 1] = encode_scalar(v)
      end
    elseif tv == "string" or tv == "boolean" then
      out[#out + 1] = encode_scalar(v)
    elseif v == nil or v == cjson.null then
      out[#out + 1] = "null"
    else
      out[#out + 1] = encode_scalar(tostring(v))
    end
  end
  ref = function(v)
    local out = {}
    encode(v, out, 0)
    return core.text.fix((table.concat(out):gsub("\\/", "/")))
  end
end

local function same(v, what)
  local text = ref(v)
  eq(json.encode(v), text, what)
  -- (the text of a reply: the encoded value as a JSON string, one pass)
  eq(json.encode_text(v), ref(text), what .. ", as a text")
end

test("every byte in a string, alone and in context", function()
  for b = 0, 255 do
    local c = string.char(b)
    same(c, "byte " .. b)
    same("a" .. c .. "/" .. c .. "\\" .. c .. "z", "byte " .. b .. " in context")
  end
  same("\\/ \\\\/ // \"/\"", "slashes after backslashes")
  same("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", "UTF-8")
  same("bad \xff\xfe and cut \xe2\x82", "invalid UTF-8 is repaired")
end)

test("every byte at every place of a longer text (scanned 8 bytes at a time)", function()
  local plain = "abcdefghijklmnopqrstuvwx"
  for b = 0, 255 do
    local c = string.char(b)
    for at = 1, #plain do
      same(plain:sub(1, at - 1) .. c .. plain:sub(at + 1), "byte " .. b .. " at " .. at)
    end
    same(c:rep(17), "byte " .. b .. " 17 times")
  end
end)

test("numbers: integers, floats, limits, non-finite", function()
  for _, n in ipairs{ 0, 1, -1, 42, 1.5, -0.25, 0.1, 1e300, -1e-300, 2^53, 2^63,
                      math.maxinteger, math.mininteger, 123456789012345678,
                      0.0012, 3.14159265358979, 1 / 3, 1e15, 1e16, 100.0,
                      99999999999999, -99999999999999, 100000000000000,
                      -100000000000000, 123456789012345 } do
    same(n, "number " .. tostring(n))
    same({ n }, "number " .. tostring(n) .. " in an array")
  end
  same(0 / 0, "nan")
  same(math.huge, "inf")
  same({ a = -math.huge, b = 0 / 0 }, "non-finite members")
end)

test("decimals written without lua-cjson read exactly as it writes them", function()
  local list = { 0.0001, -0.0001, 0.00009999, 0.000123, 1e-4, 1e-5, 5e-7, -0.0, 0.0,
    1.0, -1.0, 99999999999999.0, 99999999999999.5, 9999999999999.9, 1e14, 1e14 - 1,
    1764524000.123, 1764524000.1, 1796060742.478, 1796060742.0005, 12345678.123456,
    123456789.123456, 0.001, 0.0012, 0.123456, 0.1234567, 2.5e-3, 1 / 1000, 7 / 1000,
    -1796060742.478, 4503599627370496.5, 2^52 + 0.5, 0.1 + 0.2, 1e13 + 0.001 }
  math.randomseed(11)
  for _ = 1, 3000 do
    local scale = ({ 1, 10, 1000, 1e6, 1e7 })[math.random(5)]
    local whole = math.random(0, 3) == 0 and math.random(0, 99) or math.random(0, 2 ^ 31)
    local x = (whole * scale + math.random(0, scale - 1)) / scale
    if math.random(2) == 1 then x = -x end
    list[#list + 1] = x
    list[#list + 1] = math.floor(core.task.time() * 1000 + math.random(0, 10 ^ 6)) / 1000
  end
  for _, n in ipairs(list) do
    local want = cjson.encode(n)
    eq(json.encode(n), want, "number " .. string.format("%.17g", n))
    eq(json.encode_fields({ a = n }, { "a" }), '{"a":' .. want .. "}", "field " .. want)
  end
end)

test("encode_fields: the named members in order, nil ones left out, the rest ignored", function()
  local t = { b = "x/y", a = 1, c = json.null, d = json.array(), e = false, z = "ignored" }
  eq(json.encode_fields(t, { "a", "b", "missing", "c", "d", "e" }),
    '{"a":1,"b":"x/y","c":null,"d":[],"e":false}', "fields")
  eq(json.encode_fields({}, { "a" }), "{}", "none present")
  eq(json.encode_fields({ a = "bad \xff" }, { "a" }), '{"a":"bad \xef\xbf\xbd"}', "repaired")
end)

test("scalars and nulls", function()
  same(nil, "nil")
  same(true, "true")
  same(false, "false")
  same(cjson.null, "cjson.null")
  same({ cjson.null, 1 }, "null in an array")
  same(print, "a function")
  same(coroutine.create(print), "a thread")
end)

test("arrays and objects: shapes and key order", function()
  same({}, "empty table")
  same(json.array(), "empty array")
  same(json.array{ 1, 2, 3 }, "array")
  same({ 1, 2, 3 }, "plain sequence")
  same({ 1, 2, nil, 4 }, "sequence with a hole")
  same({ [1] = "a", [3] = "c" }, "sparse")
  same({ b = 1, a = 2, c = { d = 1, [1] = 2 } }, "sorted keys, mixed nested")
  same({ [1.5] = "x", [2] = "y", [true] = "z", s = 1 }, "non-string keys")
  same({ ["1"] = "s", [2] = "n" }, "string and number keys")
  same(json.object({ z = 1, a = 2, m = 3 }, { "m", "z" }), "ordered, then sorted")
  same(json.object({ a = 1 }, { "x", "a", "a", "y" }), "ordered with absent and repeated keys")
  same(json.object({}, {}), "empty ordered object")
  local many, order = {}, {}
  for i = 1, 80 do
    order[#order + 1] = "k" .. (i * 7 % 80)
    if i % 3 > 0 then many["k" .. i] = i end
  end
  order[#order + 1] = "k7"
  many.extra, many[5] = "x", "five"
  same(json.object(many, order), "more ordered keys than are compared on the stack")
  same(json.object({ 1, 2 }, { "x" }), "ordered sequence is an object")
  -- Keys longer than Lua interns: equal texts that are distinct objects.
  local long1, long2 = string.rep("k", 50), string.rep("k", 49) .. "k"
  same(json.object({ [long1] = 1, z = 2, [long1 .. "x"] = 3 }, { long2, long2, "z" }),
       "long ordered keys, repeated, and a long key that is not ordered")
  local mixed = setmetatable({ a = 1 }, { __index = function(_, k) return k == "v" and "virt" or nil end })
  same(mixed, "a metatable without __order")
  same(setmetatable({ a = 1 }, { __order = { "v", "a" }, __index = { v = "inherited" } }),
       "__order key found through __index")
end)

test("ordered objects: any subset of the keys, repeated and long keys, others", function()
  math.randomseed(5)
  local long = string.rep("l", 45)
  local pool = { "agent", "success", "result", "k1", "k2", long, long .. "x", "z", "a" }
  for i = 1, 400 do
    local order, t = {}, {}
    for _ = 1, math.random(0, 12) do order[#order + 1] = pool[math.random(#pool)] end
    -- (a long key equal to one of the order's, but another string object)
    if math.random(3) == 1 then order[#order + 1] = string.rep("l", 44) .. "l" end
    for _ = 1, math.random(0, 8) do
      local r = math.random(10)
      local k = r == 1 and math.random(3) or r == 2 and ("n" .. math.random(5))
        or pool[math.random(#pool)]
      t[k] = math.random(2) == 1 and k or json.null
    end
    same(json.object(t, order), "ordered object " .. i)
  end
  -- More ordered strings than are compared on the stack, an order list
  -- with a metatable: the long way, the same text.
  local many, t = {}, { k1 = 1, k40 = 2, x = 3 }
  for i = 1, 40 do many[i] = "k" .. i end
  same(json.object(t, many), "forty ordered keys")
  same(json.object({ a = 1, b = 2 }, setmetatable({ "b" }, { __index = function(_, i)
    return i == 2 and "a" or nil end })), "an order list with a metatable")
end)

test("raw values", function()
  same(json.raw("9007199254740993"), "raw number")
  -- Raw texts are written verbatim (the reference encoder turned their
  -- "\/" into "/", which changed an escaped backslash before a slash).
  eq(json.encode({ id = json.raw('"a\\/b"') }), '{"id":"a\\/b"}', "raw text with an escaped slash")
  eq(json.encode(json.array{ json.raw('{"x":"\\\\/"}'), json.raw("1") }), '[{"x":"\\\\/"},1]',
    "raw in an array")
  same(json.raw(12), "raw number value")
  -- A raw value alone (an echoed id) is its text as it is, repaired to
  -- UTF-8 like any other text.
  eq(json.encode(json.raw('"id-7"')), '"id-7"', "a raw value alone")
  eq(json.encode(json.raw('"bad \xff"')), '"bad \xef\xbf\xbd"', "a raw value alone, repaired")
  eq(json.encode(json.raw(7)), "7", "a raw number alone")
end)

test("a DispatchResult and an envelope", function()
  local result = require "ad.domain.result"
  local r = result.new({ agent = "a", success = true, result = "stub ok: hi",
    session_id = "6d97dee1-3f67-4ce4-b9de-db19576915a9", cost_usd = 0.0012,
    duration_ms = 0, num_turns = 1, denied_tools = json.array() })
  local text = json.encode(r)
  eq(text, ref(r), "result")
  local env = json.object({ jsonrpc = "2.0", id = json.raw("5"), result = json.object({
    content = json.array{ json.object({ type = "text", text = text }, { "type", "text" }) },
    isError = false }, { "content", "isError", "resultType", "_meta" }) },
    { "jsonrpc", "id", "result", "error" })
  same(env, "envelope")
end)

test("deep nesting: 200 levels encode, a cycle is an error", function()
  local deep = {}
  local cur = deep
  for _ = 1, 199 do cur[1] = {}; cur = cur[1] end
  same(deep, "200 levels")
  local cyc = {}
  cyc.self = cyc
  local okc, err = pcall(json.encode, cyc)
  ok(not okc and tostring(err):find("nested too deeply", 1, true), "cycle: " .. tostring(err))
end)

test("random values", function()
  math.randomseed(7)
  local function rnd(depth)
    local r = math.random(depth > 3 and 5 or 8)
    if r == 1 then return math.random(-1000, 1000) end
    if r == 2 then return math.random() * 1e6 end
    if r == 3 then
      local t = {}
      for i = 1, math.random(0, 12) do t[i] = string.char(math.random(0, 255)) end
      return table.concat(t)
    end
    if r == 4 then return math.random(2) == 1 end
    if r == 5 then return cjson.null end
    if r == 6 then
      local a = json.array()
      for i = 1, math.random(0, 4) do a[i] = rnd(depth + 1) end
      return a
    end
    local t = {}
    for _ = 1, math.random(0, 5) do t["k" .. math.random(20)] = rnd(depth + 1) end
    if r == 8 then return json.object(t, { "k3", "k1", "k7" }) end
    return t
  end
  for i = 1, 500 do
    same(rnd(0), "random value " .. i)
  end
end)

test("decoding: numbers a double cannot hold are refused; strings that look like them are not", function()
  local may = core.json.may_overflow
  eq(may('{"x":1e309}'), true)
  eq(may('{"x":-1E+400}'), true)
  eq(may('[' .. string.rep("9", 309) .. ']'), true)
  eq(may('{"session_id":"4e123abc-0000-4e99-a433-1a4cb74f11d0","e123":"x"}'), false)
  eq(may('{"t":"' .. string.rep("7", 400) .. '","q":"a\\"e999\\" b"}'), false)
  eq(may('{"t":"\\\\","n":2e308}'), true, "a string that ends in an escaped backslash")
  eq(json.decode('{"x":1e309}'), nil)
  eq(json.decode('{"s":"1e309"}').s, "1e309")
  eq(json.decode('{"s":"4e123","n":1.5e2}').n, 150)
end)

test("decode_shaped keeps every empty array an array, strings untouched", function()
  for text, want in pairs{
    ['[]'] = '[]',
    ['[ \n ]'] = '[]',
    ['{"a":[],"b":{},"c":[[],[{}]],"d":"[]","e":"x\\"[]"}'] =
      '{"a":[],"b":{},"c":[[],[{}]],"d":"[]","e":"x\\"[]"}',
    ['{"deep":[[[[[]]]]]}'] = '{"deep":[[[[[]]]]]}',
    ['[1,[],"[]",{}]'] = '[1,[],"[]",{}]',
    ['{"a":1}'] = '{"a":1}',
  } do
    eq(json.encode(json.decode_shaped(text)), want, text)
  end
  eq(json.decode_shaped("null"), nil)
  local v, err = json.decode_shaped("[] x")
  eq(v, nil)
  ok(type(err) == "string", "an error for text that is not JSON")
  eq(core.json.mark_empty_arrays('{"a":"[]"}'), nil, "no mark inside a string")
end)

return tap.done()
