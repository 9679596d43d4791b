-- ad.domain.request.build: a request holds the fields given to it and no
-- others (absent and empty ones are not written: the table is made at its
-- size by core.table.new, its fields set one by one).
-- Run: agent-dispatch run tests/lua/request_build_test.lua
local here = arg[0]:match("(.*/)") or "./"
local tap = dofile(here .. "tap.lua")
local test, eq, ok = tap.test, tap.eq, tap.ok
local core = require "ad.core"
local request = require "ad.domain.request"

local agent = { directory = "/tmp" }
local settings = { handoff_after_seconds = 100 }
local cfg = { agents = { w = agent }, agent_names = { "w" }, settings = settings }

local function keys(t)
  local list = {}
  for k in pairs(t) do list[#list + 1] = k end
  table.sort(list)
  return table.concat(list, ",")
end

test("core.table.new: an empty table, any size asked", function()
  local t = core.table.new(28)
  eq(next(t), nil, "empty")
  eq(getmetatable(t), nil, "no metatable")
  t.a = 1
  eq(t.a, 1, "usable")
  eq(next(core.table.new(0)), nil, "size 0")
  ok(not pcall(core.table.new, -1), "a negative size is refused")
end)

test("the fields given, the empty and absent ones left out", function()
  local req = assert(request.build(cfg, { agent = "w", task = "t", caller = "c", goal = "",
    context = "" }, { checked = true }))
  eq(keys(req), "agent,agent_name,caller,settings,stream,task,use_cache")
  eq(req.agent_name, "w"); eq(req.agent, agent); eq(req.settings, settings)
  eq(req.task, "t"); eq(req.caller, "c"); eq(req.stream, false); eq(req.use_cache, false)
end)

test("every field, when given", function()
  local fns = {}
  for _, k in ipairs({ "on_progress", "on_slot", "on_spawn", "log", "elicit" }) do
    fns[k] = function() end
  end
  local f = { agent = "w", task = "t", context = "ctx", caller = "c", goal = "g",
    response_format = "json", response_schema = { type = "object" }, session_id = "s-1",
    timeout = 30, stream = true, use_cache = true, on_progress = fns.on_progress,
    log = fns.log, on_slot = fns.on_slot, on_spawn = fns.on_spawn, elicit = fns.elicit,
    handoff = true, handoff_after_seconds = 5, trace = { id = 1 }, span_kind = "session",
    span_id = "abc", span_start = 12.5, job_id = "j-1", tree_budget_usd = 2 }
  local req = assert(request.build(cfg, f, { checked = true }))
  eq(keys(req), "agent,agent_name,caller,context,elicit,goal,handoff_after,job_id,log," ..
    "on_progress,on_slot,on_spawn,response_format,response_schema,session_id,settings," ..
    "span_id,span_kind,span_start,stream,task,timeout,trace,tree_budget_usd,use_cache")
  eq(req.context, "ctx"); eq(req.goal, "g"); eq(req.response_format, "json")
  ok(req.response_schema ~= nil, "response_schema"); eq(req.session_id, "s-1"); eq(req.timeout, 30)
  eq(req.stream, true); eq(req.use_cache, true); eq(req.on_progress, fns.on_progress)
  eq(req.log, fns.log); eq(req.on_slot, fns.on_slot); eq(req.on_spawn, fns.on_spawn)
  eq(req.elicit, fns.elicit); eq(req.handoff_after, 5); eq(req.trace, f.trace)
  eq(req.span_kind, "session"); eq(req.span_id, "abc"); eq(req.span_start, 12.5)
  eq(req.job_id, "j-1"); eq(req.tree_budget_usd, 2)
end)

test("a caller's call fields come from opts (opts.call)", function()
  local log = function() end
  local req = assert(request.build(cfg, { agent = "w", task = "t", log = "ignored" },
    { call = true, checked = true, log = log, handoff = false, use_cache = true,
      span_kind = "stream" }))
  eq(req.log, log); eq(req.use_cache, true); eq(req.span_kind, "stream")
  eq(req.handoff_after, nil)
end)

return tap.done()
