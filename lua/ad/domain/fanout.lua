--- A dispatch_parallel fan-out handed off to a job (handoff_after_seconds)
--- that outlives its server, as a handed-off single call does
--- (ad.domain.handoff, ad.domain.keeper).
---
--- In the server (M.run): the fan-out runs on the caller's task with one
--- timer armed; nothing else is built unless the deadline passes while
--- it still runs. Its items' children are the keeper's. At the hand-off
--- the run becomes one job (ad.domain.async.adopt); its private state
--- (the items, the aggregator, the trace, the results of the items that
--- ended: jobs.update_fanout) is written; the keeper holds the job
--- (core.keeper.hold) and learns which item each running child is
--- (core.keeper.handoff); each item that ends adds its result to the
--- state. When the server stops, the run is left to the keeper.
---
--- In the keeper's job runner (M.finish_kept): the same fan-out code
--- (ad.domain.dispatch.run_parallel) goes on from the state: an item that
--- ended is its stored result, a running one is its kept child read to
--- the end, the others run here under the shared concurrency limit; then
--- the aggregation, the group span and the job's result, as the server
--- would have recorded them.
local core = require "ad.core"
local json = require "ad.infra.json"
local util = require "ad.infra.util"
local jobs = require "ad.storage.jobs"
local async = require "ad.domain.async"
local keeper = require "ad.domain.keeper"

local M = {}

local STATE_KEYS = { "items", "aggregate", "agent", "trace", "span", "results", "aggregated",
  "queued" }

-- The group span as the keeper ends it: its whole record, as this
-- server would write it (its depth and pid, not the keeper's; what the
-- server keeps on it for itself left out).
local function span_copy(span)
  if type(span) ~= "table" then return nil end
  return require("ad.domain.trace").full(span)
end

-- Adds item i's result r (i = "agg": the aggregator's) to the fan-out's
-- private state. Best effort: an item whose result is not there runs
-- again in the keeper.
local function save_result(run, i, r)
  pcall(jobs.update_fanout, run.id, function(text)
    local ok, st = pcall(json.decode, text or "")
    if not (ok and type(st) == "table" and type(st.results) == "table") then return text end
    if i == "agg" then st.aggregated = r else st.results[i] = r end
    return json.encode(json.object(st, STATE_KEYS))
  end)
end

-- Notes in the fan-out's state the span of item i that holds a tree
-- budget reservation but has no child the keeper knows yet (span_id), or
-- takes it out (nil): a server killed meanwhile leaves that reservation,
-- which the keeper gives back before it runs the item again.
local function note_queued(run, i, span_id)
  if not run.id then return end
  pcall(jobs.update_fanout, run.id, function(text)
    local ok, st = pcall(json.decode, text or "")
    if not (ok and type(st) == "table") then return text end
    local q = type(st.queued) == "table" and st.queued or {}
    q[tostring(i)] = span_id
    st.queued = q
    return json.encode(json.object(st, STATE_KEYS))
  end)
end

-- Tells the keeper which item of the job a running child is.
local function hand_item(run, item)
  if item.kept or not item.pid or type(item.index) ~= "number" and item.index ~= "agg" then return end
  local meta = keeper.meta(item, { id = run.id })
  meta.item = item.index
  -- (slot: a warm pool process's turn; a one-shot child's is its own)
  item.kept = core.keeper.handoff(item.pid, json.encode(meta), false, item.slot) ~= nil
  if item.kept and item.queued then
    item.queued = nil
    note_queued(run, item.index, nil)
  end
end

-- The request of item i (or of the aggregator, "agg") of a fan-out that
-- may be handed off: its child is the keeper's, and the run knows it.
local function observe(run, i, req)
  if req.agent.host then return end -- (a remote agent's ssh stays the server's)
  req.keeper = true
  local item = { req = req, index = i }
  run.items[i] = item
  req.on_pid = function(pid, argv, age, slot)
    item.pid, item.argv, item.age, item.slot = pid, argv, age, slot
    if run.kept then hand_item(run, item) end
  end
  req.on_span = function(span)
    item.span = span
    -- (reserved from here until its child is handed to the keeper)
    if run.kept and run.ctx and run.ctx.cap then
      item.queued = true
      note_queued(run, i, span.span_id)
    end
  end
  req.on_output = function(line) item.last_line = line end
  req.on_channel = function(_, mode) if mode then item.transport = mode end end
  -- Left to the keeper: the server starts nothing more.
  req.on_slot = function() return not run.abandoned end
end

-- The hand-off of run (job rec) to the keeper: its state written, the
-- job held there, its running items' children handed. run.kept when the
-- keeper has it.
local function keep(run, rec, items, agg, agent)
  local results = json.array()
  for i = 1, #items do results[i] = run.results[i] or json.null end
  -- Items whose span holds a reservation and whose child is not the
  -- keeper's yet (waiting for a slot): see note_queued.
  local queued = {}
  for i, item in pairs(run.ctx and run.ctx.cap and run.items or {}) do
    if item.span and not item.pid then
      item.queued = true
      queued[tostring(i)] = item.span.span_id
    end
  end
  local state = json.object({ items = json.array(items), aggregate = agg, agent = agent,
    trace = run.ctx, span = span_copy(run.group), results = results,
    queued = next(queued) and queued or nil }, STATE_KEYS)
  if not pcall(jobs.update_fanout, rec.id, function() return json.encode(state) end) then return end
  local key, kp = core.keeper.hold(json.encode(json.object({ job = rec.id, fanout = true },
    { "job", "fanout" })))
  if not key then return end
  run.hold, run.kept = key, true
  local _, kstart = core.jobs.proc_identity(kp)
  if kstart then pcall(jobs.set_owner, rec.id, { pid = kp, start = kstart }) end
  for _, item in pairs(run.items) do hand_item(run, item) end
end

-- The server is stopping with the kept run still going: nothing more
-- starts here, the spans the keeper ends are left to it, and an item
-- whose result the server read already (the keeper cannot read it again)
-- is stored with the others.
local function leave(run)
  run.abandoned = true
  if run.group then run.group.left = true end
  for i, item in pairs(run.items) do
    if item.kept then
      if item.slot then item.slot:leave() end -- (the keeper's copy holds it)
      local r = keeper.result_read(item)
      if r then save_result(run, i, r) end
      if item.span then item.span.left = true end
    end
  end
end

--- M.parallel (ad.domain.dispatch) for a sync MCP tool call with a
--- hand-off deadline (after, seconds): answered through hooks.answer with
--- reply(rec, run) when it is still running then, the fan-out going on as
--- job rec (fields: its record's agent and task). Returns the fan-out's
--- value, or ad.domain.handoff.ANSWERED once the job has its result.
function M.run(cfg, items, agg, hooks, after, fields, reply)
  local D = require "ad.domain.dispatch"
  local run = { task = core.task.current(), tail = {}, items = {}, results = {} }
  local h = util.copy(hooks)
  local inner = h.progress
  h.progress = function(done, total, msg)
    async.note(run, msg)
    if inner then inner(done, total, msg) end
  end
  local outlive = cfg.settings.jobs_outlive_server ~= false
  if outlive then h.observe = function(i, req) observe(run, i, req) end end
  h.item_done = function(i, r)
    run.items[i] = nil
    run.results[i] = r
    if run.kept and not run.abandoned then save_result(run, i, r) end
  end
  h.on_group = function(span, ctx) run.group, run.ctx = span, ctx end
  run.on_leave = function() leave(run) end
  local function hand_off()
    if run.finished or run.id or run.handing then return end
    run.handing, run.keeping = true, core.task.event()
    run.done = core.task.event()
    local rec, why = async.adopt(run, fields, { running = true })
    if not rec then
      run.keeping:set(true)
      if h.log then h.log("warning", "Could not hand the call off to a job (" .. tostring(why) ..
        "); waiting for it instead") end
      return
    end
    -- The job's id finds its tree (dispatch_trace, `trace JOB`): the
    -- group span names it, recorded at once.
    if run.group then
      run.group.job_id = rec.id
      require("ad.domain.trace").write(run.group)
    end
    if outlive then keep(run, rec, items, agg, fields.agent) end
    run.keeping:set(true)
    h.answer(reply(rec, run))
  end
  local timer = core.task.after(after, hand_off)
  local ok, out = pcall(D.parallel, cfg, items, agg, h)
  timer:stop()
  run.finished = true
  if run.adopting then run.adopting:wait() end
  if run.keeping then run.keeping:wait() end
  if run.hold and not run.abandoned then core.keeper.forget(run.hold) end
  if not run.id then
    if not ok then error(out, 0) end
    return out
  end
  if ok then out = D.parallel_result(out, fields.agent) end
  async.finish(run, ok, out)
  return require("ad.domain.handoff").ANSWERED
end

-- ---- in the keeper's job runner ----------------------------------------------

local function message_of(e)
  return type(e) == "table" and tostring(e.message) or tostring(e)
end

-- A kept child of the fan-out: its process object, meta and slot.
local function adopt(a)
  local p, meta = keeper.adopt(a)
  return { p = p, meta = meta, slot = tonumber(a[9]) or -1, a = a }
end

-- Lets kept child c go: read to its end (killed first when kill), its
-- concurrency slot released.
local function let_go(c, kill)
  if kill then c.p:kill(true) end
  keeper.drain(c.p)
  if c.slot >= 0 then core.keeper.release_slot(c.slot) end
  if c.a.input then core.keeper.close_input(c.a.input) c.a.input = nil end
  c.slot = -1
end

-- Kept child c read to its end: its result, as the server would have
-- made and settled it (view: the request's view for the hooks).
local function read_kept(c, view, settings)
  local ok, r = pcall(keeper.read, c.p, c.meta or {}, view, nil, nil, c.a)
  if c.slot >= 0 then core.keeper.release_slot(c.slot) end
  if c.a.input then core.keeper.close_input(c.a.input) c.a.input = nil end
  c.slot, c.read = -1, true
  if not ok then error(r, 0) end
  keeper.settle(c.meta or {}, r, settings)
  return r
end

-- Serves job id's inbox while task finishes it: an "interrupt" (a cancel
-- from another process, ad.domain.async.cancel_by_owner) records the job
-- cancelled and cancels task, which kills its running items' groups and
-- starts nothing more; answered once the task has ended. Returns the
-- function that stops serving (once the job has ended).
local finish_here
local function serve_cancel(id, task)
  local ended = core.task.event()
  local handlers = {
    interrupt = function(msg)
      local rec, outcome = jobs.cancel(id, true, "Cancelled while running; the keeper " ..
        "that finished this handed-off fan-out killed its running items' subprocesses " ..
        "and started no more")
      pcall(jobs.record_message, id, json.object({ kind = "interrupt", by = msg.by,
        at = msg.at or core.task.time() }, { "kind", "by", "at" }))
      if outcome == "cancelled_running" then
        task:cancel()
        ended:wait(30)
      end
      return { ok = rec ~= nil and rec.status == "cancelled", outcome = outcome }
    end,
  }
  local oks, server = pcall(require("ad.storage.inbox").serve, id, handlers)
  return function()
    ended:set(true)
    if oks and server then server:close() end
  end
end

--- Finishes the handed-off fan-out job id whose server has gone, in the
--- keeper's job runner. kids: its kept children by item index ("agg":
--- the aggregator), each the numbers run_one takes (ad.domain.keeper).
function M.finish_kept(id, kids)
  local kept = {}
  for k, a in pairs(kids) do kept[k] = adopt(a) end
  local text = jobs.valid(id) and jobs.fanout_state(id) or nil
  local ok, st = pcall(json.decode, text or "")
  local cfg, cerr
  if ok and type(st) == "table" then
    cfg, cerr = require("ad.storage.config").load()
  end
  if not (cfg and type(st.items) == "table") then
    -- Ended (or cancelled) meanwhile, or nothing to go on from.
    for _, c in pairs(kept) do let_go(c, true) end
    if text then
      local why = cfg and "its state is unreadable" or
        require("ad.infra.errors.render").load_line(cerr)
      jobs.fail(id, "The keeper could not finish this handed-off fan-out after its server " ..
        "exited (" .. tostring(why) .. "); its running items were killed. Re-dispatch if needed.")
    end
    return
  end
  jobs.set_owner(id, jobs.server_identity())
  -- The record names this process as the job's (verified as any job's
  -- process is), and its inbox takes a cancel from any later process.
  pcall(jobs.set_process, id, keeper.process_of(core.sys.getpid()))
  local stop = serve_cancel(id, core.task.current())
  local ok2, err2 = pcall(finish_here, id, kept, st, cfg)
  stop()
  if not ok2 then error(err2, 0) end
end

-- The rest of M.finish_kept (st: the fan-out's state, cfg: the
-- configuration).
function finish_here(id, kept, st, cfg)
  jobs.share_limit(cfg.settings.max_concurrency)
  local D = require "ad.domain.dispatch"
  local results = type(st.results) == "table" and st.results or {}
  local before = {}
  for i = 1, #st.items do before[i] = type(results[i]) == "table" end
  -- A child whose result the server read already ends on its own: let go
  -- at once (its slot with it), not held until the fan-out ends.
  local going = {}
  for k, c in pairs(kept) do
    if type(k == "agg" and st.aggregated or results[k]) == "table" then
      c.read = true
      going[#going + 1] = core.task.spawn(function() let_go(c, false) end)
    end
  end
  local rec = jobs.get(id)
  local tail = rec and type(rec.progress) == "table" and util.copy(rec.progress) or {}
  local hooks = {
    -- The progress tail goes on with the items that end here.
    progress = function(_, _, msg, i)
      if before[i] then return end
      tail[#tail + 1] = util.cut(msg, async.TAIL_CHARS)
      if #tail > async.TAIL_LINES then table.remove(tail, 1) end
      pcall(jobs.update_progress, id, tail)
    end,
    item_run = function(i, it)
      if type(results[i]) == "table" then return results[i] end
      local c = kept[i]
      if c then
        return read_kept(c, { agent = it.agent, task = it.task, context = it.context,
          caller = it.caller, goal = it.goal, response_format = it.response_format }, cfg.settings)
      end
    end,
    item_done = function(i, r) results[i] = r end,
    agg_run = function(req)
      if type(st.aggregated) == "table" then return st.aggregated end
      local c = kept.agg
      if c then
        return read_kept(c, require("ad.domain.request").view(req), cfg.settings)
      end
    end,
  }
  -- The reservations of items the server had not started (it died while
  -- they waited for a slot): given back, they run again here.
  if type(st.queued) == "table" and type(st.trace) == "table" and type(st.trace.trace_id) == "string"
      and st.trace.cap then
    local trace = require "ad.domain.trace"
    for k, sid in pairs(st.queued) do
      local i = tonumber(k) or k
      if type(sid) == "string" and not kept[i] and type(results[i]) ~= "table" then
        pcall(trace.settle, { trace_id = st.trace.trace_id }, { span_id = sid }, st.agent, 0, false)
      end
    end
  end
  local failed = false
  local done, out = pcall(D.run_parallel, cfg, st.items, st.aggregate, hooks,
    type(st.trace) == "table" and st.trace or nil, function() failed = true end)
  for _, c in pairs(kept) do
    if not c.read then let_go(c, not done) end
  end
  for _, t in ipairs(going) do
    while not t:done() do if t:wait() == nil then break end end
  end
  local cancelled = not done and type(out) == "table" and out.type == "cancelled"
  if type(st.span) == "table" then
    local trace = require "ad.domain.trace"
    if type(st.span.denied_tools) ~= "table" then st.span.denied_tools = json.array() end
    pcall(trace.finish, st.span, done and (failed and "error" or "ok") or
      (cancelled and "cancelled" or "error"))
  end
  if cancelled then return end -- (stopped: the job's end is recorded already)
  local r
  if done then
    r = D.parallel_result(out, st.agent)
  else
    r = require("ad.domain.runner").failure(st.agent, "cli_error",
      "The keeper could not finish this handed-off fan-out: " .. message_of(out))
  end
  local okf, frec = pcall(jobs.finish, id, r)
  local plugins = package.loaded["ad.domain.plugins"]
  if okf and frec and plugins then pcall(plugins.job_done, frec) end
end

return M
