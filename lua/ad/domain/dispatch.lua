--- The dispatch operations shared by the MCP tools and `run` scripts:
--- one dispatch (cache-aware, group-aware), a session turn, a streamed
--- dispatch, a parallel fan-out with optional aggregation, and a dialogue.
--- Validation problems come back as nil, message (the tools wrap them in
--- an envelope; scripts raise them); dispatch failures are DispatchResults.
local json = require "ad.infra.json"
local util = require "ad.infra.util"
local limits = require "ad.infra.limits"
local request = require "ad.domain.request"
local result = require "ad.domain.result"
local runner = require "ad.domain.runner"
local groups = require "ad.domain.groups"
local task = require "ad.infra.task"
local aggregate = require "ad.domain.aggregate"
local dialogue = require "ad.domain.dialogue"
local trace = require "ad.domain.trace"
local handoff = util.lazy "ad.domain.handoff"

local M = {}

-- The request builder's checks, under the names callers know.
M.MIN_TIMEOUT, M.MAX_TIMEOUT = request.MIN_TIMEOUT, request.MAX_TIMEOUT
M.timeout_override = request.timeout_override
M.unknown_agent = request.unknown_agent
M.nul_field = request.nul_field
M.nul_error = request.nul_error

local function noop() end

--- The hint of a call handed off to a job: the exact call that gets its
--- answer, and what the job's life depends on.
function M.handoff_hint(id, after, kept)
  return "Still running after " .. util.num(after) .. " s, so this call returned; " ..
    "the same run goes on as job " .. id .. ". Get its answer with dispatch_wait " ..
    "(job_id \"" .. id .. "\"; it waits up to timeout_seconds, 1-3600, and can be " ..
    "called again); dispatch_status shows its progress, dispatch_cancel stops it. " ..
    (kept and "It goes on if this server is stopped: a later one gets its answer by id."
      or "The job runs in this server process: it ends if the server is stopped.")
end

-- What a handed-off call returns: the job, the progress so far, the hint.
local function handed_off(rec, run, after, agent)
  return json.object({ status = "running", job_id = rec.id, agent = agent,
    running_seconds = after, progress = json.array(util.copy(run.tail)),
    hint = M.handoff_hint(rec.id, after, run.kept) },
    { "status", "job_id", "agent", "running_seconds", "progress", "hint" })
end

-- The answer of a call handed off by ad.domain.handoff (run.req: its
-- request): one function for every call.
local function handoff_reply(rec, run)
  return handed_off(rec, run, run.req.handoff_after, run.req.agent_name)
end

-- Runs fn as a run that becomes a job (fields, opts: ad.domain.async.adopt)
-- when it is still running after `after` seconds. Returns true and fn's
-- values, or false and the hand-off answer. A job record that cannot be
-- written leaves the call waiting as it would without a hand-off.
-- A child that asks its caller for a permission (ad.domain.relay) ends the
-- wait early: the run becomes a job and the answer says what it waits for.
local function race(after, fn, as_result, fields, opts, log, relayed)
  local async = require "ad.domain.async"
  local run = async.watch(fn, as_result)
  if relayed then run.asking = require("ad.core").task.event() end
  local res = table.pack(async.await(run, after, run.asking))
  if res[1] then return table.unpack(res, 1, res.n) end
  local rec, why = async.adopt(run, fields, opts)
  -- (the dispatch's line before the call's answer: ad.domain.runner.announce)
  if rec and run.span then runner.announce(run.span) end
  if run.relay then
    local relay = require "ad.domain.relay"
    relay.adopted(run, rec)
    if rec and run.relay.asking then return false, relay.awaiting(rec, run, fields.agent) end
  end
  if rec then return false, handed_off(rec, run, after, fields.agent) end
  if log then log("warning", "Could not hand the call off to a job (" .. tostring(why) ..
    "); waiting for it instead") end
  return async.await(run)
end

--- One dispatch. p: agent, task, context, caller, goal, response_format,
--- response_schema, timeout_seconds, group, session_id, stream, on_progress,
--- use_cache, return_ref, summary_chars, handoff_after_seconds. hooks:
--- log(level, msg), answer(value) (optional). opts.handoff: a sync MCP
--- tool call, which still running at its deadline (handoff_after_seconds,
--- else the setting) goes on as a job while this returns {status =
--- "running", job_id, progress, hint} - or, with hooks.answer, the call
--- is answered with that at its deadline (ad.domain.handoff) and this
--- returns handoff.ANSWERED when the job has its result. Returns a
--- DispatchResult (or, with return_ref, the ref payload of the stored
--- result), or nil, message (invalid arguments, a refusing hook).
--- opts.use_cache, opts.span_kind: as p's (a tool passes its validated
--- arguments as p, untouched); opts.checked: p is such arguments (their
--- strings were checked for NUL by ad.tools.validate).
function M.one(cfg, p, hooks, opts)
  local f = { call = true, log = hooks and hooks.log, elicit = hooks and hooks.elicit,
    handoff = opts ~= nil and opts.handoff == true, use_cache = opts and opts.use_cache,
    span_kind = opts and opts.span_kind, checked = opts and opts.checked }
  local req, err = request.build(cfg, p, f)
  if not req then return nil, err end
  -- (a fan-out item: its fan-out observes its child, ad.domain.fanout)
  if p.observe then p.observe(req) end
  local r, ran
  if req.handoff_after and hooks and hooks.answer then
    -- The call is answered through hooks.answer if it is handed off.
    r, ran = handoff.run(req, req.handoff_after, hooks.answer, handoff_reply, f.log)
    if r == handoff.ANSWERED then return r end
  elseif req.handoff_after then
    local async = require "ad.domain.async"
    local finished
    finished, r, ran = race(req.handoff_after,
      function(run) return runner.run(async.observe(run, req)) end,
      -- The job's result: a refusing before_dispatch hook is a failure.
      function(res, why) return res or result.failure(req.agent_name, "permission", why) end,
      { agent = req.agent_name, task = req.task, context = req.context,
        caller = req.caller, goal = req.goal }, nil, f.log, req.relay)
    if not finished then return r end
  else
    r, ran = runner.run(req)
  end
  if not r then return nil, ran end
  if p.return_ref then
    return require("ad.domain.async").store_ref({ agent = req.agent_name, task = p.task,
      context = ran.context, caller = p.caller, goal = p.goal }, r,
      p.summary_chars == nil and limits.SUMMARY_CHARS or p.summary_chars)
  end
  return r
end

local ITEM_KEYS = { "agent", "task", "context", "caller", "goal",
  "response_format", "response_schema", "return_ref", "summary_chars", "timeout_seconds", "group" }

local function as_int(v)
  if v == nil or v == json.null then return true, nil end
  if type(v) == "boolean" then return true, v and 1 or 0 end
  if type(v) == "number" then
    return true, math.tointeger(v >= 0 and math.floor(v) or math.ceil(v))
  end
  if type(v) == "string" and util.strip(v):match("^[-+]?%d+$") then
    return true, math.tointeger(tonumber(util.strip(v)))
  end
  return false
end

--- Validates a parallel request (everything before any dispatch). Returns
--- the normalized items or nil, message.
function M.parallel_items(cfg, list, agg)
  if type(list) ~= "table" or not json.is_array(list) or #list == 0 then
    return nil, "dispatches must be a non-empty JSON array"
  end
  local max = math.max(100, cfg.settings.max_concurrency * 20)
  if #list > max then
    return nil, "Too many dispatches: " .. #list .. " > " .. max ..
      ". Split into multiple calls or raise settings.max_concurrency."
  end
  local items = {}
  for i, raw in ipairs(list) do
    local at = "dispatches[" .. (i - 1) .. "]"
    if type(raw) ~= "table" or json.is_array(raw) then
      return nil, at .. " must be an object, got " .. json.type_name(raw)
    end
    if raw.agent == nil or raw.task == nil or raw.agent == json.null or raw.task == json.null then
      return nil, at .. " must have 'agent' and 'task' keys"
    end
    if type(raw.agent) ~= "string" or type(raw.task) ~= "string" then
      return nil, at .. ".agent and .task must be strings"
    end
    local nul = M.nul_field(raw, ITEM_KEYS)
    if nul then return nil, at .. "." .. nul .. " must not contain NUL characters" end
    if not cfg.agents[raw.agent] then return nil, M.unknown_agent(cfg, raw.agent) end
    local item = {}
    for _, k in ipairs(ITEM_KEYS) do
      local v = raw[k]
      if v == json.null then v = nil end
      item[k] = v
    end
    for _, k in ipairs({ "context", "caller", "goal", "response_format", "group" }) do
      if item[k] ~= nil and type(item[k]) ~= "string" then
        return nil, at .. "." .. k .. " must be a string, got " .. json.describe(item[k])
      end
    end
    if item.response_schema ~= nil then
      local _, serr = request.response_schema(item.response_schema)
      if serr then return nil, at .. "." .. serr end
    end
    if item.group and item.group ~= "" then
      local err = groups.check(cfg, item.group, item.agent)
      if err then return nil, err end
    end
    for _, k in ipairs({ "timeout_seconds", "summary_chars" }) do
      local ok, n = as_int(raw[k])
      if not ok then
        return nil, at .. "." .. k .. " must be a number, got " .. json.describe(raw[k])
      end
      item[k] = n
    end
    item.return_ref = item.return_ref ~= nil and item.return_ref ~= false and item.return_ref ~= 0 and item.return_ref ~= ""
    items[i] = item
  end
  if agg and agg ~= "" and not cfg.agents[agg] then
    return nil, M.unknown_agent(cfg, agg)
  end
  return items
end

-- A group node of the trace (a parallel fan-out, a dialogue): its span,
-- and the context of what runs under it. tree_budget: the call's
-- tree_budget_usd (validated by the caller).
local function group_span(cfg, kind, task_text, tree_budget)
  local ctx = trace.root(cfg.settings, tree_budget)
  local span = trace.start(ctx, { kind = kind, task = task_text })
  return span, trace.under(ctx, span)
end

-- Ends a group span when fn ends (ok: its result's status(); raised: the
-- error again, the span cancelled or failed).
local function in_group(span, fn, status)
  local ok, res = pcall(fn)
  if not ok then
    trace.finish(span, type(res) == "table" and res.type == "cancelled" and "cancelled" or "error")
    error(res, 0)
  end
  trace.finish(span, status(res))
  return res
end

--- Runs validated items concurrently (each through the shared limiter) and
--- optionally aggregates. hooks: log, progress(done, total, msg),
--- item_result(item, r) -> value to report (e.g. a ref payload),
--- tree_budget_usd (the tree's spend cap given with the call). The trace
--- gets a "parallel" node with an "item" span per item and the
--- "aggregate" span under it.
function M.parallel(cfg, items, agg, hooks)
  hooks = hooks or {}
  local names = {}
  for i, it in ipairs(items) do names[i] = it.agent end
  local span, ctx = group_span(cfg, "parallel", "parallel: " .. table.concat(names, ", ") ..
    ((agg and agg ~= "") and (" -> " .. agg) or ""), hooks.tree_budget_usd)
  local failed = false
  if hooks.on_group then hooks.on_group(span, ctx) end
  return in_group(span, function()
    return M.run_parallel(cfg, items, agg, hooks, ctx, function() failed = true end)
  end, function() return failed and "error" or "ok" end)
end

--- hooks may also carry what a fan-out that outlives its server needs
--- (ad.domain.fanout): observe(i, req) sees the request of item i (or of
--- the aggregator, i = "agg") before it runs; item_run(i, item, p) ->
--- the item's result instead of running it (nil: run it);
--- item_done(i, r) hears of each item's result; agg_run(req) -> the
--- aggregator's result instead of running it (nil: run it). progress
--- gets the item's index as a fourth argument.
function M.run_parallel(cfg, items, agg, hooks, ctx, on_failure)
  local log = hooks.log or noop
  local names = {}
  for i, it in ipairs(items) do names[i] = it.agent end
  log("info", "Dispatching in parallel to: " .. table.concat(names, ", "))
  local done = 0
  local fns = {}
  for i, it in ipairs(items) do
    fns[i] = function()
      local p = util.copy(it)
      p.use_cache = true
      p.trace, p.span_kind = ctx, "item"
      if hooks.observe then p.observe = function(req) hooks.observe(i, req) end end
      local r, err
      if hooks.item_run then r = hooks.item_run(i, it, p) end
      if not r then r, err = M.one(cfg, p, hooks) end
      if not r then
        r = result.failure(it.agent, "cli_error", err)
      end
      if hooks.item_done then hooks.item_done(i, r) end
      if r.success == false then on_failure() end
      done = done + 1
      if hooks.progress then
        hooks.progress(done, #items, it.agent .. " " .. (r.success and "done" or "failed") ..
          " (" .. done .. "/" .. #items .. ")", i)
      end
      if hooks.item_result then return hooks.item_result(it, r) end
      return r
    end
  end
  local outs = task.all(fns)
  local results = json.array()
  for i, o in ipairs(outs) do
    if o.ok then
      results[i] = o.value
    else
      if type(o.value) == "table" and o.value.type == "cancelled" then error(o.value, 0) end
      local msg = type(o.value) == "table" and tostring(o.value.message) or tostring(o.value)
      results[i] = result.failure(items[i].agent, "cli_error", (msg:match("^[^\n]*")))
    end
  end
  if not agg or agg == "" then return results end
  log("info", "Aggregating results via " .. agg .. "...")
  local ok, aggregated = pcall(function()
    local req = assert(request.build(cfg, { agent = agg, task = aggregate.TASK,
      context = aggregate.context(results), caller = aggregate.CALLER,
      goal = aggregate.GOAL, trace = ctx, span_kind = "aggregate" }, { composed = true }))
    if hooks.observe then hooks.observe("agg", req) end
    return hooks.agg_run and hooks.agg_run(req) or runner.dispatch(req)
  end)
  if not ok then
    if type(aggregated) == "table" and aggregated.type == "cancelled" then error(aggregated, 0) end
    aggregated = result.failure(agg, "cli_error", "Aggregation failed: " ..
      tostring(type(aggregated) == "table" and aggregated.message or aggregated):match("^[^\n]*"))
  end
  if aggregated.success == false then on_failure() end
  return json.object({ individual_results = results, aggregated = aggregated },
                     { "individual_results", "aggregated" })
end

-- The result of a parallel fan-out handed off to a job: a DispatchResult
-- whose individual_results (and aggregated) are what the call would have
-- returned; success when every item (and the aggregation) succeeded.
function M.parallel_result(out, agent)
  local list = out.individual_results or out
  local agg = out.aggregated
  local failed, first = 0, nil
  for _, r in ipairs(list) do
    if type(r) == "table" and r.success == false then
      failed = failed + 1
      first = first or r
    end
  end
  local r = result.new({ agent = agent, success = failed == 0 and not (agg and agg.success == false),
    result = agg and agg.result or "", session_id = agg and agg.session_id })
  if failed > 0 then
    r.error = failed .. " of " .. #list .. " dispatches failed (first: " ..
      tostring(first.error) .. ")"
    r.error_type = first.error_type
  elseif agg and agg.success == false then
    r.error, r.error_type = "Aggregation failed: " .. tostring(agg.error), agg.error_type
  end
  r.individual_results = json.array(list)
  r.aggregated = agg
  return r
end

--- M.parallel for a sync MCP tool call with a hand-off deadline (seconds)
--- and hooks.answer (without it, there is nothing to answer early with:
--- M.parallel): a fan-out still running after it goes on as one job (its
--- result holds every item's result and the aggregation, see
--- M.parallel_result), the call answered at once with {status =
--- "running", job_id, progress, hint}; it outlives this server through
--- the keeper (ad.domain.fanout). Returns the fan-out's value, or
--- ad.domain.handoff.ANSWERED once a handed-off job has its result.
function M.parallel_handoff(cfg, items, agg, hooks, after)
  local h = util.copy(hooks or {})
  if not h.answer then return M.parallel(cfg, items, agg, h) end
  local names, seen = {}, {}
  for _, it in ipairs(items) do
    if not seen[it.agent] then seen[it.agent] = true; names[#names + 1] = it.agent end
  end
  local agent = table.concat(names, ",")
  local fields = { agent = agent, task = "dispatch_parallel of " .. #items .. " tasks" ..
      ((agg and agg ~= "") and (", aggregated by " .. agg) or "") .. ": " ..
      util.cut(items[1].task, 200) }
  return require("ad.domain.fanout").run(cfg, items, agg, h, after, fields,
    function(rec, run) return handed_off(rec, run, after, agent) end)
end

--- A two-agent dialogue (F48). Returns the response or nil, message.
function M.dialogue(cfg, p, hooks)
  local log = hooks and hooks.log or noop
  for _, k in ipairs({ "requester", "responder" }) do
    if type(p[k]) ~= "string" then return nil, k .. " must be an agent name (a string)" end
  end
  -- (as an empty task: the agents would be started with nothing to discuss)
  if type(p.topic) ~= "string" or not p.topic:find("%S") then
    return nil, "topic is empty: say what the two agents should discuss"
  end
  if p.max_rounds ~= nil and type(p.max_rounds) ~= "number" then
    return nil, "max_rounds must be a number, got " .. type(p.max_rounds)
  end
  local nul = M.nul_field(p, { "requester", "responder", "topic" })
  if nul then return nil, M.nul_error(nul) end
  if not cfg.agents[p.requester] then return nil, M.unknown_agent(cfg, p.requester) end
  if not cfg.agents[p.responder] then return nil, M.unknown_agent(cfg, p.responder) end
  local rounds = math.max(1, math.min(10, p.max_rounds or 3))
  local tree_budget, berr = request.tree_budget(p.tree_budget_usd)
  if berr then return nil, berr end
  local span, ctx = group_span(cfg, "dialogue", p.requester .. " <-> " .. p.responder ..
    ": " .. p.topic, tree_budget)
  return in_group(span, function() return M.run_dialogue(cfg, p, hooks, rounds, ctx) end,
    function(res) return res.resolved and "ok" or
      ((res.conversation[#res.conversation] or {}).error_type and "error" or "ok") end)
end

function M.run_dialogue(cfg, p, hooks, rounds, ctx)
  local log = hooks and hooks.log or noop
  log("info", "Dialogue: " .. p.requester .. " <-> " .. p.responder .. " (max " ..
    rounds .. " rounds): " .. util.cut(p.topic, 80))
  local sessions = {}
  local ok, res = pcall(dialogue.run, { requester = p.requester, responder = p.responder,
                             topic = p.topic, max_rounds = rounds },
    function(agent, other, role, round, prompt, session_id)
      local req = assert(request.build(cfg, { agent = agent, task = prompt, caller = other,
        goal = util.cut(p.topic, 200), session_id = session_id, trace = ctx,
        span_kind = "turn" }, { composed = true }))
      local r = runner.dispatch(req)
      if r.session_id then sessions[r.session_id] = true end
      log("info", "[round " .. round .. "] " .. agent .. ": " ..
        util.cut(r.result ~= "" and r.result or (r.error or ""), 120) .. "...")
      if hooks and hooks.progress then
        hooks.progress(round, rounds, "round " .. round .. ": " .. agent .. " (" .. role .. ")")
      end
      return r
    end)
  -- Nobody can continue a dialogue's sessions: their live processes
  -- (ad.domain.live) end with it, however it ends (a cancel, an error).
  local live = package.loaded["ad.domain.live"]
  if live then for sid in pairs(sessions) do live.release(sid) end end
  if not ok then error(res, 0) end
  local conv = json.array()
  for i, e in ipairs(res.conversation) do
    conv[i] = json.object(e, { "agent", "role", "round", "message", "cost_usd", "error", "error_type" })
    if e.cost_usd == nil then conv[i].cost_usd = json.null end
  end
  res.conversation = conv
  return json.object(res, { "resolved", "rounds", "total_cost_usd",
    "total_duration_ms", "final_answer", "conversation" })
end

return M
