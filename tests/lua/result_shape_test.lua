-- ad.domain.result: every DispatchResult encodes its keys in result.KEYS
-- order; they share one metatable (made once, not per dispatch), and a
-- result given more keys (json.append_keys) gets its own, the others
-- left as they were.
-- Run: agent-dispatch run tests/lua/result_shape_test.lua
local here = arg[0]:match("(.*/)") or "./"
local tap = dofile(here .. "tap.lua")
local test, eq, ok = tap.test, tap.eq, tap.ok
local json = require "ad.infra.json"
local result = require "ad.domain.result"

test("KEYS order, one shared metatable", function()
  local a = result.new({ num_turns = 1, success = true, agent = "w", result = "r", cost_usd = 0.5 })
  eq(json.encode(a), '{"agent":"w","success":true,"result":"r","cost_usd":0.5,"num_turns":1}')
  local b = result.failure("w", "timeout", "slow", { hint = "wait" })
  eq(json.encode(b), '{"agent":"w","success":false,"result":"","error":"slow",' ..
    '"error_type":"timeout","hint":"wait"}')
  ok(getmetatable(a) == getmetatable(b), "shared")
  eq(getmetatable(a).__order, result.KEYS)
end)

test("json.append_keys: that result's own order, the others unchanged", function()
  local a = result.new({ agent = "w", success = true })
  local b = result.new({ agent = "v", success = true })
  json.append_keys(a, "extra")
  a.extra = 1
  ok(getmetatable(a) ~= getmetatable(b), "a metatable of its own")
  eq(json.encode(a), '{"agent":"w","success":true,"extra":1}')
  eq(#getmetatable(b).__order, #result.KEYS, "the shared order unchanged")
  b.extra = 2 -- (not ordered: after the ordered keys, sorted)
  eq(json.encode(b), '{"agent":"v","success":true,"extra":2}')
end)

return tap.done()
