-- ad.tools.validate: the arguments a tool call accepts, and the message of
-- the first problem in the order of its params, stay what the full check
-- (the reference below, the check as it was written first) gives, for every
-- built-in tool and many argument tables: each param absent, null, of its
-- type, of another type, a numeric string, a float, a string with NUL, and
-- keys no param has.
-- Run: agent-dispatch run tests/lua/validate_test.lua
local here = arg[0]:match("(.*/)") or "./"
local tap = dofile(here .. "tap.lua")
local test, eq, ok = tap.test, tap.eq, tap.ok
local json = require "ad.infra.json"
local util = require "ad.infra.util"
local tools = require "ad.tools"

for _, mod in ipairs({ "ad.tools.agents", "ad.tools.dispatch", "ad.tools.manage",
                       "ad.tools.jobs", "ad.tools.steer", "ad.tools.trace", "ad.tools.cache",
                       "ad.tools.relay", "ad.tools.live" }) do
  require(mod)
end

-- The reference: every param in order, its default, coercion and NUL check.
local function coerce(p, v)
  local tv = type(v)
  if p.type == "string" then
    if tv == "string" then return v end
  elseif p.type == "integer" then
    if math.type(v) == "integer" then return v end
    if tv == "number" and v == math.floor(v) then return math.tointeger(v) end
    if tv == "string" and util.strip(v):match("^[-+]?%d+$") then
      return math.tointeger(tonumber(util.strip(v)))
    end
  elseif p.type == "number" then
    if tv == "number" then return v end
    if tv == "string" and tonumber(util.strip(v)) then return tonumber(util.strip(v)) end
  elseif p.type == "boolean" then
    if tv == "boolean" then return v end
  elseif p.type == "schema" then
    if tv == "string" or (tv == "table" and not (next(v) ~= nil and json.is_array(v))) then
      return v
    end
  end
  return nil
end

local function reference(def, raw)
  local args = {}
  for _, p in ipairs(def.params or {}) do
    local v = raw[p.name]
    if v == nil or v == json.null then
      if p.required then
        return nil, "Invalid arguments for " .. def.name .. ": '" .. p.name .. "' is required"
      end
      args[p.name] = p.default
    else
      local c = coerce(p, v)
      if c == nil then
        local want = p.type == "integer" and "an integer"
          or p.type == "schema" and "a JSON Schema object or its JSON text" or "a " .. p.type
        return nil, "Invalid arguments for " .. def.name .. ": '" .. p.name ..
          "' must be " .. want .. ", got " .. json.describe(v)
      end
      if type(c) == "string" and c:find("\0", 1, true) then
        return nil, "Invalid arguments for " .. def.name .. ": '" .. p.name ..
          "' must not contain NUL characters"
      end
      args[p.name] = c
    end
  end
  return args
end

-- The values tried for a param of each type (index 1: absent).
local SCHEMA = json.decode('{"type":"object"}')
local CHOICES = {
  string = { nil, json.null, "text", "", " 12 ", "a\0b", 5, true },
  integer = { nil, json.null, 7, 7.0, 7.5, " 42 ", "x", "\0", false },
  number = { nil, json.null, 1.5, 3, " 2.5 ", "n", true },
  boolean = { nil, json.null, true, false, "true", 1 },
  schema = { nil, json.null, '{"type":"object"}', SCHEMA, json.array({ 1 }), 3, "s\0" },
}

local function same(a, msg_a, b, msg_b, what)
  if a == nil or b == nil then
    eq(a, nil, what .. ": both refused")
    eq(b, nil, what .. ": both refused")
    eq(msg_a, msg_b, what .. ": the same message")
    return
  end
  for k, v in pairs(b) do eq(a[k], v, what .. ": " .. tostring(k)) end
  for k in pairs(a) do ok(b[k] ~= nil, what .. ": no key more (" .. tostring(k) .. ")") end
end

local seed = 11
local function rand(n)
  seed = (seed * 1103515245 + 12345) % 2147483648
  return seed % n + 1
end

test("every built-in tool: the same arguments or the same first problem", function()
  local cases = 0
  for _, name in ipairs(tools.names()) do
    local def = tools.get(name)
    local params = def.params or {}
    for round = 1, 300 do
      local raw = { not_a_param = "ignored" }
      for _, p in ipairs(params) do
        local choices = CHOICES[p.type]
        -- Mostly valid values: a refusal ends the check at its param.
        local pick = round <= 150 and rand(3) or rand(#choices + 1) - 1
        if pick > 0 then raw[p.name] = choices[pick] end
      end
      local a, ma = tools.validate(def, raw)
      local b, mb = reference(def, raw)
      same(a, ma, b, mb, name .. " #" .. round)
      cases = cases + 1
    end
    -- Each param alone absent, null and wrong, the others valid.
    for i, p in ipairs(params) do
      for _, bad in ipairs({ "absent", json.null, {} }) do
        local raw = {}
        for j, q in ipairs(params) do
          if j ~= i then raw[q.name] = CHOICES[q.type][3] end
        end
        if bad ~= "absent" then raw[p.name] = bad end
        local a, ma = tools.validate(def, raw)
        local b, mb = reference(def, raw)
        same(a, ma, b, mb, name .. "." .. p.name .. " " .. tostring(bad))
        cases = cases + 1
      end
    end
  end
  ok(cases > 1000, "cases: " .. cases)
end)

test("a call's arguments are its own table each time", function()
  local def = tools.get("dispatch")
  local a = tools.validate(def, { agent = "w", task = "t" })
  local b = tools.validate(def, { agent = "v", task = "u", caller = "c" })
  ok(a ~= b, "two tables")
  eq(a.agent, "w")
  eq(a.caller, "", "the default, not the later call's value")
  eq(b.caller, "c")
  a.agent = "changed"
  eq(tools.validate(def, { agent = "w", task = "t" }).agent, "w")
end)

test("a definition whose param names are not all strings is checked in full", function()
  local def = { name = "odd_tool", params = { { name = "a", type = "string", required = true },
    { name = 2, type = "integer", default = 5 } }, handler = function() end }
  local a = tools.validate(def, { a = "x", [2] = 3 })
  eq(a.a, "x")
  eq(a[2], 3)
  local b, msg = tools.validate(def, { [2] = 3 })
  eq(b, nil)
  eq(msg, "Invalid arguments for odd_tool: 'a' is required")
end)

test("param names that need quoting in Lua are taken as they are", function()
  local def = tools.define{ name = "quoted_names", handler = function() end, params = {
    { name = "with space", type = "string", default = "d" },
    { name = "quote\"and]]bracket\n", type = "integer", required = true },
    { name = "end", type = "boolean", default = false } } }
  local a = tools.validate(def, { ["quote\"and]]bracket\n"] = "9" })
  eq(a["with space"], "d")
  eq(a["quote\"and]]bracket\n"], 9)
  eq(a["end"], false)
end)

test("core.text.nul_free: a string without NUL (the fast check's one call per string)", function()
  local core = require "ad.core"
  eq(core.text.nul_free("plain"), true, "plain")
  eq(core.text.nul_free(""), true, "empty")
  eq(core.text.nul_free("a\0b"), false, "NUL inside")
  eq(core.text.nul_free("ab\0"), false, "NUL at the end")
  eq(core.text.nul_free(12), false, "a number is not a string")
  eq(core.text.nul_free(nil), false, "nil")
  eq(core.text.nul_free({}), false, "a table")
end)

return tap.done()
