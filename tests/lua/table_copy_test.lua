-- core.table.copy (ad.infra.util.copy): a shallow copy, made in C at its
-- final size, of every key of a table: array part, hash part, nested
-- tables shared, no metatable; the original left as it was.
-- Run: agent-dispatch run tests/lua/table_copy_test.lua
local here = arg[0]:match("(.*/)") or "./"
local tap = dofile(here .. "tap.lua")
local test, eq, ok = tap.test, tap.eq, tap.ok
local core = require "ad.core"
local util = require "ad.infra.util"

test("util.copy is core.table.copy", function()
  eq(util.copy, core.table.copy)
end)

test("every key, shallow, without the metatable", function()
  local inner = { x = 1 }
  local t = setmetatable({ "a", "b", "c", agent = "w", task = "t", n = 3.5, flag = false,
    inner = inner, [10] = "ten", [true] = "yes" }, { __index = function() return "meta" end })
  local c = core.table.copy(t)
  ok(c ~= t, "a new table")
  eq(getmetatable(c), nil, "no metatable")
  local n = 0
  for k, v in pairs(t) do
    n = n + 1
    eq(rawget(c, k), v, "key " .. tostring(k))
  end
  local m = 0
  for _ in pairs(c) do m = m + 1 end
  eq(m, n, "no key more")
  eq(#c, 3)
  ok(c.inner == inner, "nested tables shared")
  eq(c.missing, nil, "no __index")
  c.agent = "other"
  eq(t.agent, "w", "the original unchanged")
end)

test("empty, and a pure array", function()
  eq(next(core.table.copy({})), nil)
  local c = core.table.copy({ 1, 2, 3, 4 })
  eq(table.concat(c, ","), "1,2,3,4")
end)

return tap.done()
