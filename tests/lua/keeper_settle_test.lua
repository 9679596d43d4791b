-- What the keeper's job runner does with the result of a child it read
-- (ad.domain.keeper.settle) is what the server's runner does: the tree
-- budget reserved for the call's span settled with what it cost, and a
-- clean success stored in the result cache under the request's key,
-- through the runner's own functions (runner.settle_tree,
-- runner.remember).
-- Run: agent-dispatch run tests/lua/keeper_settle_test.lua
local here = arg[0]:match("(.*/)") or "./"
local tap = dofile(here .. "tap.lua")
local test, eq, ok = tap.test, tap.eq, tap.ok
local json = require "ad.infra.json"
local keeper = require "ad.domain.keeper"
local runner = require "ad.domain.runner"
local trace = require "ad.domain.trace"
local state = require "ad.storage.state"
local traces = require "ad.storage.traces"

local settings = { cache = { enabled = true, ttl = 300, max_size = 10, max_bytes = 1 << 20 } }
local AGENT = { directory = "/tmp", timeout = 300 }

local function req_for(task)
  return { agent_name = "a", agent = AGENT, task = task, use_cache = true, settings = settings }
end

test("a clean success is cached under the request's key, as the runner caches it", function()
  local key = runner.cache_key(req_for("kept task"))
  ok(type(key) == "string", "a cacheable request has a key")
  local r = { agent = "a", success = true, result = "kept answer", cost_usd = 0.1 }
  keeper.settle({ agent = "a", cache = key }, r, settings)
  local hit = state.cache(settings):get(key)
  ok(hit ~= nil, "stored")
  eq(json.decode(hit).result, "kept answer")
end)

test("a failure, a denied tool or an answer that needed permission decisions is not cached", function()
  for i, r in ipairs({
    { agent = "a", success = false, error = "no" },
    { agent = "a", success = true, result = "x", denied_tools = { "Bash" } },
    { agent = "a", success = true, result = "x", permissions = { { decision = "allow" } } },
  }) do
    local key = runner.cache_key(req_for("not cached " .. i))
    keeper.settle({ agent = "a", cache = key }, r, settings)
    eq(state.cache(settings):get(key), nil, "case " .. i)
  end
end)

test("no key (a session turn, use_cache off): nothing is cached", function()
  local q = req_for("session turn")
  q.session_id = "00000000-0000-4000-8000-000000000000"
  eq(runner.cache_key(q), nil)
  local q2 = req_for("no cache")
  q2.use_cache = false
  eq(runner.cache_key(q2), nil)
end)

test("the tree budget reserved for the span is settled with what the child cost", function()
  local dir = traces.dir()
  local ctx = trace.root({}, 1.0)
  local span = trace.record(ctx, { kind = "handoff", agent = "a", task = "t" })
  local amount = trace.reserve(ctx, span, "a", nil)
  ok(amount and amount > 0, "reserved")
  local copy = { trace_id = span.trace_id, span_id = span.span_id, start = span.start, kind = "handoff",
    status = "running", parent_id = json.null, agent = "a" }
  keeper.settle({ agent = "a", reserved = true, span = copy }, { agent = "a", success = true,
    result = "x", cost_usd = 0.25 }, settings)
  local f = assert(io.open(dir .. "/" .. span.trace_id .. ".budget"))
  local led = json.decode(f:read("a"))
  f:close()
  ok(math.abs(led.spent - 0.25) < 1e-9, "spent " .. tostring(led.spent))
  eq(next(led.reserved), nil, "nothing reserved any more")
  os.remove(dir .. "/" .. span.trace_id .. ".budget")
end)
return tap.done()
