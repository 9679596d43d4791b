--- Background dispatches (F31, F52-F55) and result references (F35): the
--- same runner and the same limiter as every other dispatch, one task per
--- job, on the loop of the process that runs it (a detached job runner,
--- or with jobs_outlive_server off the server itself).
---
--- Over 500 lines on purpose: a job's life (submit, observe, settle, cancel,
--- wait, shutdown, hand-off adoption) shares the registry of local jobs and
--- the run object; split, each part would reach into the others' state.
local core = require "ad.core"
local json = require "ad.infra.json"
local util = require "ad.infra.util"
local jobs = require "ad.storage.jobs"
local runner = require "ad.domain.runner"
local errors = require "ad.infra.errors"
local trace = require "ad.domain.trace"
local request = require "ad.domain.request"

local M = {}

M.TAIL_LINES, M.TAIL_CHARS, M.FLUSH_EVERY = 20, 300, 1.0

--- Seconds a worker keeps a finished job's answer and retries recording
--- it when the write fails (a full disk) before it records the loss.
M.SAVE_RETRY = 600

--- Jobs whose worker runs in this process: id -> {task=, done=event,
--- result= (finished, its end not recorded yet), unsaved= (why)}.
local registry = {}

local function message_of(e)
  return type(e) == "table" and tostring(e.message) or tostring(e)
end

-- The end of a job whose result could not be written: one more try of
-- the whole result, then a failed record saying what happened (written in
-- place if it must). Never raises.
local function record_lost(id, result, why)
  if pcall(jobs.finish, id, result) then return end
  local rec, err = jobs.fail_unstored(id, "The agent finished " ..
    (result.success and "successfully" or "with an error") .. " but its result could not " ..
    "be stored (" .. tostring(why) .. "); the answer is lost. Free space in the jobs " ..
    "directory and re-dispatch if needed.")
  if not rec then
    io.stderr:write("agent-dispatch: job ", id, ": its end could not be recorded (",
      tostring(err), "); the record still says it is running\n")
  end
end

-- Records a finished job's result. A failed write is retried with backoff
-- for up to SAVE_RETRY seconds while the answer is kept here; then (or
-- when the task is cancelled: the server stops) the loss is recorded.
local function record_result(entry, id, result)
  entry.result = result
  local delay, deadline = 0.25, core.task.now() + M.SAVE_RETRY
  while true do
    local ok, rec = pcall(jobs.finish, id, result)
    if ok then
      entry.result = nil
      return rec
    end
    if not entry.unsaved then
      io.stderr:write("agent-dispatch: job ", id, ": cannot record its end (",
        message_of(rec), "); keeping the answer and retrying\n")
    end
    entry.unsaved = message_of(rec)
    -- Out of file descriptors with no child left in this process (a job
    -- runner started under a tiny open-files limit): nothing here will
    -- free one, and retrying would keep the job reading running; the
    -- loss is recorded if it can be, else the next reader settles a job
    -- whose runner is gone.
    if type(rec) == "table" and rec.code == "EMFILE" and core.limiter.stats().live == 0 then
      break
    end
    if core.task.now() >= deadline or not core.task.sleep(delay) then break end
    delay = math.min(delay * 2, 2)
  end
  if entry.result then
    entry.result = nil
    record_lost(id, result, entry.unsaved)
  end
  return nil
end

function M.local_job(id) return registry[id] end

-- A run: one dispatch (or a parallel fan-out) on a task of its own that
-- is a job, or may become one (the sync-to-async hand-off of a call still
-- running at its deadline). Its fields: task; done (event, set at the very
-- end); id (the job, nil until the run is adopted); tail (the last
-- progress lines); process (the child's identity); started (the record
-- says running); start_error; result/unsaved (record_result); hooks;
-- finished (the dispatch returned: ok, value, extra). The registry holds
-- every run that is a job, so there is one owner of an in-process job's
-- lifecycle: its start gate, its progress tail, its end.
local function new_run(hooks)
  return { done = core.task.event(), tail = {}, hooks = hooks }
end

-- Writes the progress tail of a run that is a job. Best effort: a failed
-- write (a full disk) must not stop the job; the next flush tries again.
local function flush(run)
  run.last_write = core.task.now()
  if not run.id or #run.tail == 0 then return end
  local ok, err = pcall(jobs.update_progress, run.id, run.tail)
  if not ok and not run.flush_failed then
    io.stderr:write("agent-dispatch: job ", run.id, ": cannot store its progress (",
      message_of(err), ")\n")
  end
  run.flush_failed = not ok
end

-- The child's identity as a record keeps it, or nil when it is gone.
local identity = jobs.process_identity

--- req with the observers a run needs: the start gate of a job (a job
--- cancelled while queued never starts; the record names its child,
--- durably, before the child can do anything), the child's identity and
--- the progress tail (kept here, written to the record once the run is a
--- job). req's own on_progress still sees every line.
function M.observe(run, req)
  local r = util.copy(req)
  local inner = req.on_progress
  -- A call that may be handed off: its child is the keeper's, so the job
  -- can outlive this process (ad.domain.keeper).
  if not run.id and require("ad.domain.keeper").wanted(req) then
    r.keeper = true
    -- The last line the server read: if it is the result when the server
    -- stops, the server records it (the keeper can no longer read it).
    r.on_output = require("ad.domain.keeper").output_observer(run)
  end
  run.req = r
  r.on_slot = function() return M.slot_gate(run) end
  r.on_spawn = function(pid, argv, mark) return M.spawned(run, pid, argv, mark) end
  r.on_progress = function(line)
    M.note(run, line)
    if inner then inner(line) end
  end
  r.on_span = function(span) run.span = span end
  r.relay_run = run -- a permission request waits on the run (ad.domain.relay)
  if r.relay then request.with_relay(r) end
  -- The live child (ad.domain.live_run) while it works, and the
  -- transport: what a steer message to the job finds (ad.domain.steer).
  r.on_channel = function(ch, mode)
    run.channel = ch
    if mode then run.transport = mode end
  end
  return r
end

--- The start gate of a run's child (req.on_slot): false when the run is
--- a job that may not start any more.
function M.slot_gate(run)
  if not run.id then return true end
  -- A second spawn of the same dispatch (the CLI refused --session-id)
  -- finds the job running on our behalf.
  local rec = jobs.get(run.id)
  return rec ~= nil and (rec.status == "pending" or (run.started and rec.status == "running"))
end

--- A run's child was spawned (req.on_spawn): a job's record names it
--- before it runs. False: the runner ends it unstarted.
function M.spawned(run, pid, argv, mark)
  -- A sync call records nothing yet: its child's identity is read only
  -- if it is handed off (M.adopt), not on every call.
  run.pid, run.argv, run.mark = pid, argv, mark
  if not run.id then return true end
  run.process = identity(pid, mark)
  local ok, rec = pcall(run.started and jobs.set_process or jobs.mark_running, run.id, run.process)
  run.started = run.started or (ok and rec ~= nil)
  if not ok then run.start_error = message_of(rec) end
  -- Handed off before it had a child (it waited for a slot, or this is a
  -- second spawn of the call): the keeper learns of this one now, or the
  -- job would end with this server.
  if ok and rec and run.process and run.handed_off then
    require("ad.domain.keeper").hand(run, rec)
  end
  -- Cancelled between the slot and the spawn (the lock may have made
  -- us wait), or the record could not be written: the job must not
  -- run. The runner ends the child unstarted; finish() is refused.
  return (ok and rec and run.process) and true or false
end

-- A run that is a job takes messages (steer, interrupt, ...) in its inbox
-- until it ends.
local function serve_inbox(run)
  run.inbox = require("ad.domain.steer").serve(run)
end

--- Adds a line to a run's progress tail (written at most every
--- FLUSH_EVERY seconds once the run is a job).
function M.note(run, line)
  local tail = run.tail
  tail[#tail + 1] = util.cut(line, M.TAIL_CHARS)
  if #tail > M.TAIL_LINES then table.remove(tail, 1) end
  if run.id and (not run.last_write or core.task.now() - run.last_write >= M.FLUSH_EVERY) then
    flush(run)
  end
end

-- The end of a run that is a job: its result, its cancellation or its
-- crash is recorded, the job_done hooks run, it leaves the registry.
local function settle(run, ok, result)
  local id = run.id
  if ok then
    flush(run)
    if run.start_error then
      result = runner.failure(result.agent, "cli_error", "The job could not be recorded " ..
        "as running (" .. run.start_error .. "), so its agent was stopped.")
    end
    local rec = record_result(run, id, result)
    if rec then require("ad.domain.plugins").job_done(rec) end
    if run.hooks and run.hooks.on_done then pcall(run.hooks.on_done, id, result) end
  elseif type(result) == "table" and result.type == "cancelled" then
    -- dispatch_cancel and shutdown record the end before they cancel us;
    -- any other stop (the record changed under us) must still end the
    -- job: a no-op when it is terminal already.
    pcall(jobs.cancel, id, true, "Cancelled: its worker was stopped (" ..
      tostring(result.message) .. ")")
    -- A live child stopped with the interrupt left a resumable session.
    if result.session_id then pcall(jobs.note_session, id, result.session_id) end
  else
    local msg = type(result) == "table" and tostring(result.message) or tostring(result)
    io.stderr:write("agent-dispatch: job ", id, " worker crashed: ", msg, "\n")
    jobs.fail_unstored(id, "Worker crashed: " .. msg:match("^[^\n]*"))
  end
  -- Last: its files go only once the end is recorded (on a full disk
  -- their room must not be what lets the record through late).
  if run.inbox then run.inbox:close() end
  registry[id] = nil
end

-- Starts fn(run) on the run's task. fn returns the job's result (a
-- DispatchResult, or what as_result makes of its values). A run that is a
-- job when fn returns settles here; one being adopted waits for the
-- adoption first.
local function launch(run, fn)
  run.task = core.task.spawn(function()
    local res = table.pack(pcall(fn, run))
    run.finished = res
    if run.adopting then run.adopting:wait() end
    -- (abandoned: left to the keeper as this process exits; it records the end)
    if run.id and not run.abandoned then
      local ok, value = res[1], res[2]
      if ok and run.as_result then ok, value = pcall(run.as_result, table.unpack(res, 2, res.n)) end
      settle(run, ok, value)
    end
    run.done:set(true)
  end)
  return run
end

--- The end of a run whose dispatch ran on the caller's own task
--- (ad.domain.handoff): when it was adopted meanwhile, its result (ok,
--- value: as pcall gives them) is recorded as launch records a job's.
function M.finish(run, ok, value)
  -- (abandoned: left to the keeper as this process exits; it records the end)
  if run.id and not run.abandoned then settle(run, ok, value) end
  if run.done then run.done:set(true) end
end

--- Starts the worker of a pending job. req is a request (ad.domain.request);
--- hooks.on_done(id, result) is optional.
function M.start(id, req, hooks)
  local run = new_run(hooks)
  run.id = id
  registry[id] = run
  serve_inbox(run)
  return launch(run, function()
    local r = M.observe(run, req)
    r.stream = true
    r.use_cache = false -- a job always runs its agent
    return runner.dispatch(r)
  end)
end

--- The sync-to-async hand-off, part one: runs fn(run) on its own task, a
--- run that can become a job (M.adopt) if it is still running at the
--- caller's deadline. fn builds its request with M.observe(run, req) (or
--- feeds M.note itself). as_result(...) turns fn's values into the job's
--- result (default: the first). Returns the run; M.await waits for it.
function M.watch(fn, as_result)
  local run = new_run()
  run.as_result = as_result
  return launch(run, fn)
end

--- Waits at most timeout seconds for a watched run: true, fn's values when
--- it returned (raising what it raised); false when it is still running.
--- A caller cancelled while waiting cancels the run and waits until its
--- children are gone before the cancellation propagates.
---
--- alert (an event, optional) ends the wait early too: false is returned
--- as for a run still running.
function M.await(run, timeout, alert)
  local _, why
  if alert then
    local waker = core.task.spawn(function()
      if run.done:wait() then alert:set(false) end
    end)
    _, why = alert:wait(timeout)
    waker:cancel()
  else
    _, why = run.done:wait(timeout)
  end
  if why == "cancelled" or core.task.cancelled() then
    run.task:cancel()
    while not run.task:done() do
      if run.task:wait() == nil then break end
    end
    error(errors.new("cancelled", "cancelled"), 0)
  end
  local res = run.finished
  if not res then return false end
  if not res[1] then error(res[2], 0) end
  return true, table.unpack(res, 2, res.n)
end

--- The sync-to-async hand-off, part two: the running run becomes a job
--- owned by this process, like a job of M.start: fields is the record's
--- agent, task, context, caller, goal (and request). The record is
--- pending until its child runs (running, naming it, at once when the
--- child runs already); the progress tail so far is written; the result is
--- recorded when the run ends; dispatch_cancel kills the child's group.
--- opts.running: the run has no single child to name (a parallel
--- fan-out), so the record says running at once. Returns the record, or
--- nil and why when it could not be written (the run then goes on as the
--- sync call it was).
function M.adopt(run, fields, opts)
  run.adopting = core.task.event()
  local ok, rec = pcall(jobs.create, fields)
  if run.pid and not run.process and not run.finished then run.process = identity(run.pid, run.mark) end
  if ok and run.process and not run.finished then
    local marked
    ok, marked = pcall(jobs.mark_running, rec.id, run.process)
    if ok and marked then rec, run.started = marked, true end
  end
  if not ok then
    local why = message_of(rec)
    if type(rec) == "table" and rec.id then pcall(jobs.fail, rec.id, why) end
    run.adopting:set(true)
    run.adopting = nil
    return nil, why
  end
  run.id, run.handed_off = rec.id, true
  registry[rec.id] = run
  serve_inbox(run)
  if run.span then trace.handoff(run.span, rec.id) end
  require("ad.domain.keeper").hand(run, rec)
  if opts and opts.running and rec.status == "pending" and not run.finished then
    local okr, marked = pcall(jobs.mark_running, rec.id, nil)
    if okr and marked then rec, run.started = marked, true end
  end
  flush(run)
  run.adopting:set(true)
  run.adopting = nil
  return jobs.get(rec.id) or rec
end

-- What a detached job runner needs of req besides the record's own fields
-- (the group's shared context is folded into context already; the group's
-- name is kept for hooks), or nil when there is nothing.
local function request_fields(req)
  local t, any = {}, false
  for _, k in ipairs(jobs.REQUEST_KEYS) do
    -- (the trace is written by submit)
    if k ~= "trace" and req[k] ~= nil then t[k], any = req[k], true end
  end
  return any and json.object(t, jobs.REQUEST_KEYS) or nil
end

-- The trace fields a detached job runner reads its span from: it ends
-- span, started here under ctx (ad.domain.jobrunner).
local function trace_fields(ctx, span)
  return json.object({ trace_id = ctx.trace_id, parent_id = ctx.parent_id,
    cap = ctx.cap, holders = json.array(util.copy(ctx.holders or {})),
    span_id = span.span_id, start = span.start },
    { "trace_id", "parent_id", "cap", "holders", "span_id", "start" })
end

-- Starts the detached job runner of a pending job and names it as the
-- job's owner. Raises when it cannot be started.
local function start_detached(rec)
  local pid, err = core.proc.detach({ "__job-runner", rec.id })
  if not pid then error(err, 0) end
  local _, start = core.jobs.proc_identity(pid)
  -- It may have finished already (nothing to name then): the record is
  -- terminal and set_owner leaves it alone.
  if start then jobs.set_owner(rec.id, { pid = pid, start = start }) end
end

--- The one way an async job starts (dispatch_async, MCP tasks, the `run`
--- API, CLI `dispatch --async`): the job is recorded as pending with the
--- request's agent, task, context (a group's shared context folded in),
--- caller, goal and the rest of the request (`request`: response_format,
--- response_schema, session_id, timeout override, group). With settings.jobs_outlive_server
--- (the default) a detached job runner (`agent-dispatch __job-runner ID`,
--- ad.domain.jobrunner, in its own session) runs it, so it outlives this
--- process; otherwise its worker starts on this process's loop. req is a
--- request (ad.domain.request); hooks.on_done(id, result) is optional (for
--- a detached job it runs here when the record ends, if this process is
--- still there); opts.detached = true detaches whatever the setting says
--- (CLI `dispatch --async`). Returns the pending record.
function M.submit(req, hooks, opts)
  local detached = (opts and opts.detached) or req.settings == nil or
    req.settings.jobs_outlive_server ~= false
  -- The job's span starts now (its worker, maybe another process, ends
  -- it): the job runs in the caller's tree with the caller's budget.
  local ctx = req.trace or trace.root(req.settings, req.tree_budget_usd)
  req = util.copy(req)
  req.trace, req.span_kind, req.span_id = ctx, "async", trace.new_id()
  local span = trace.record(ctx, { kind = "async", span_id = req.span_id, agent = req.agent_name,
    task = req.task, caller = req.caller, goal = req.goal })
  req.span_start = span.start
  local fields
  if detached then
    fields = request_fields(req) or json.object({}, jobs.REQUEST_KEYS)
    fields.trace = trace_fields(ctx, span)
  end
  local rec = jobs.create({ agent = req.agent_name, task = req.task, context = req.context,
                            caller = req.caller, goal = req.goal, request = fields })
  req.job_id, span.job_id = rec.id, rec.id
  trace.write(span)
  -- A start that fails (a module that cannot load, no process) ends the
  -- job: no job may stay pending forever.
  local ok, err
  if detached then
    ok, err = pcall(start_detached, rec)
    if ok and hooks and hooks.on_done then
      core.task.spawn(function()
        local r
        repeat r = M.wait(rec.id, 3600) until not r or jobs.TERMINAL[r.status]
        if r then pcall(hooks.on_done, rec.id, r.result) end
      end)
    end
  else
    ok, err = pcall(M.start, rec.id, req, hooks)
  end
  if not ok then
    local why = "The job could not start: " .. tostring(type(err) == "table" and err.message or err)
    pcall(jobs.fail, rec.id, why)
    -- (a process the system refused, a module that cannot load: told as
    -- what happened, with the job it failed, not as a bug)
    if type(err) ~= "table" then
      err = errors.new("io", why .. " (job " .. rec.id .. ", recorded as failed)",
        "The system may be out of processes or open files (ulimit -u, ulimit -n); retry later.")
    end
    error(err, 0)
  end
  return rec
end

M.NO_PROCESS = "The job is running but its record names no process (it was " ..
  "written by an older version or another program), so its process cannot be " ..
  "verified and killed; it was left running. Wait for it with dispatch_wait, or " ..
  "stop the program that runs it; a running job that shows no sign of life for " ..
  "an hour is marked failed when an agent-dispatch server starts."

--- Asks the owner of job id in another process to cancel it (an
--- "interrupt" message, ad.storage.inbox); true when it did.
function M.cancel_by_owner(id)
  local reply = require("ad.storage.inbox").post(id, { kind = "interrupt" },
    { by = "cancel (pid " .. core.sys.getpid() .. ")", wait = 30 })
  local rec = jobs.get(id)
  return (reply and reply.ok) or (rec ~= nil and rec.status == "cancelled")
end

--- F55 plus cancelling jobs of servers that are gone. Returns the tool
--- response table (or nil, "not_found").
function M.cancel(id)
  local rec, outcome = jobs.cancel(id, false)
  if outcome == "not_found" then return nil, "not_found" end
  local message
  if outcome == "running" then
    local entry = registry[id]
    if entry then
      local live = entry.channel ~= nil
      rec, outcome = jobs.cancel(id, true, live and ("Cancelled while running; its agent " ..
        "was interrupted, and its subprocess killed if it did not stop within " ..
        "settings.interrupt_grace_seconds (its session_id is kept for dispatch_session)") or nil)
      if outcome == "cancelled_running" then
        entry.task:cancel() -- kills the child's process group (live: after the interrupt)
        message = live and "The job was running; its agent was interrupted, and its " ..
          "subprocess is killed if it does not stop within settings.interrupt_grace_seconds." or
          "The job was running; its subprocess was killed."
      end
    elseif jobs.process_alive(rec) and M.cancel_by_owner(id) then
      -- Its owner (a detached job runner, another server) stopped it: the
      -- interrupt first, the group killed after the grace.
      rec = jobs.get(id)
      outcome = "cancelled_running"
      message = "The job was running in another process; its owner stopped the " ..
        "subprocess (interrupted, then killed if it did not stop in time)."
    elseif jobs.process_alive(rec) then
      -- Started by another (possibly dead) server: its child is still
      -- exactly the process recorded, so it is safe to kill.
      local victim = { process = rec.process }
      rec, outcome = jobs.cancel(id, true,
        "Cancelled while running; the subprocess was killed (verified by pid, process group and start time)")
      if outcome == "cancelled_running" then
        jobs.kill_recorded(victim, 2)
        message = "The job was running in another server process; its subprocess " ..
          "(verified by pid, process group and start time) was killed."
      end
    elseif rec and rec.status == "running" and type(rec.process) ~= "table" and
        M.cancel_by_owner(id) then
      -- No one child to name (a handed-off fan-out runs several): the
      -- process that serves its inbox stopped it.
      rec = jobs.get(id)
      outcome = "cancelled_running"
      message = "The job was running in another process; its owner stopped its " ..
        "subprocesses and started no more."
    elseif rec and rec.status == "running" and type(rec.process) ~= "table" then
      -- Written by an older version or another program: nothing says which
      -- process runs it or whether its server is gone, so nothing is
      -- killed and the record is not touched.
      message = M.NO_PROCESS
    elseif rec and rec.status == "running" and not (rec.process.server_pid and
        core.jobs.proc_identity(rec.process.server_pid)) then
      rec, outcome = jobs.cancel(id, true,
        "Cancelled while running; its process was no longer running (the server " ..
        "that started it has exited)")
      message = "The job's server and subprocess were already gone; the job is now cancelled."
    else
      message = "The job is running but was not started by this server instance, " ..
        "and it cannot be killed safely; poll dispatch_status."
    end
  end
  return json.object({ job_id = id, outcome = outcome, status = rec and rec.status,
                       message = message }, { "job_id", "outcome", "status", "message" })
end

--- Waits for a job to end, at most timeout seconds. Wakes on the local
--- worker's completion, or on a change of the job's file or the exit of
--- the process running it (another process's job, which a runner killed
--- by SIGKILL leaves unfinished: settled here as failed) - never a
--- sleep-and-poll loop. opts.awaiting: also return (rec, false, true)
--- while the job's agent waits for a permission decision
--- (permissions.pending, ad.domain.relay); the record is watched then.
function M.wait(id, timeout, opts)
  local awaiting = opts and opts.awaiting
  local deadline = core.task.now() + timeout
  local pid, start -- the process whose exit ends a wait too, once known
  while true do
    local entry = registry[id]
    -- Armed before the record is read: a change between the read and the
    -- wait still ends the wait (armed after it, the wait would sleep
    -- through that change until its timeout).
    local watch = (awaiting or not entry) and jobs.watch(id, pid, start) or nil
    local rec = jobs.get(id)
    if rec and not entry and not jobs.TERMINAL[rec.status] and jobs.settle_orphan(rec) then
      rec = jobs.get(id) or rec
    end
    local left = deadline - core.task.now()
    local rpid, rstart
    if rec and not entry then rpid, rstart = jobs.runs_it(rec) end
    if not rec or jobs.TERMINAL[rec.status] or left <= 0 or rpid ~= pid then
      if watch then watch:close() end
      if not rec then return nil end
      if jobs.TERMINAL[rec.status] then return rec end
      if left <= 0 then return rec, true end
      pid, start = rpid, rstart -- look again, watching that process too
    elseif awaiting and type(rec.permissions) == "table" and type(rec.permissions.pending) == "table"
        and #rec.permissions.pending > 0 then
      if watch then watch:close() end
      return rec, false, true
    else
      if entry and not watch then
        entry.done:wait(left)
      elseif watch then
        watch:wait(left)
        watch:close()
      else
        core.task.sleep(math.min(left, 0.5)) -- a store that cannot be watched
      end
      if core.task.cancelled() then return rec, true end
    end
  end
end

--- True when job id is run by this process.
function M.runs_here(id)
  return registry[id] ~= nil
end

--- The runs of calls handed off to jobs (M.adopt) still running here.
function M.handed_off()
  local out = {}
  for _, run in pairs(registry) do
    if run.handed_off then out[#out + 1] = run end
  end
  return out
end

--- Server shutdown: every job this process runs is marked failed (so the
--- record is terminal at once, not an hour later) and its child killed.
--- why names what stopped the server (a signal), when known.
function M.shutdown(why)
  local tasks, kept = {}, false
  for id, entry in pairs(registry) do
    if entry.kept and not entry.finished then
      entry.abandoned, kept = true, true
      require("ad.domain.keeper").record_read(id, entry)
      if entry.span then entry.span.left = true end
      -- (a handed-off fan-out: ad.domain.fanout)
      if entry.on_leave then entry.on_leave() end
    end
  end
  -- Handed-off calls whose child the keeper holds go on there: not
  -- failed, not killed.
  if kept then core.keeper.leave() end
  for id, entry in pairs(registry) do
    if entry.abandoned then
      registry[id] = nil -- (assigning nil to a present key during pairs is allowed)
    else
      M.end_for_shutdown(id, entry, why)
      if entry.abandoned then registry[id] = nil end -- (a job runner has it)
      entry.task:cancel()
      tasks[#tasks + 1] = entry
    end
  end
  return tasks
end

-- A handed-off call whose child never started (it waited for a slot)
-- when the server stops: with settings.jobs_outlive_server (the default)
-- a detached job runner takes the job over, as it runs a dispatch_async
-- job, under a span of its own beside the call's (which ends cancelled
-- here, its reservation of the tree's budget given back). True when the
-- runner started; the entry is then left alone (abandoned).
local function requeue(id, entry)
  local req = entry.req
  if not req or not req.settings or req.settings.jobs_outlive_server == false then
    return false
  end
  local base = req.trace or trace.root(req.settings, req.tree_budget_usd)
  local call = entry.span
  local ctx = { trace_id = call and call.trace_id or base.trace_id,
    parent_id = call and call.parent_id or base.parent_id, cap = base.cap, holders = base.holders }
  local span = trace.record(ctx, { kind = "async", agent = req.agent_name, task = req.task,
    caller = req.caller, goal = req.goal, job_id = id })
  local fields = request_fields(req) or json.object({}, jobs.REQUEST_KEYS)
  fields.trace = trace_fields(ctx, span)
  local ok, rec = pcall(jobs.mutate_pending, id, function(r)
    r.request = fields
    return r
  end)
  if not (ok and rec) then return false end
  pcall(trace.write, span)
  entry.abandoned = true -- its task, cancelled next, records nothing
  local started = pcall(start_detached, rec)
  if not started then
    entry.abandoned = false
    return false
  end
  if entry.inbox then entry.inbox:close() end
  return true
end

-- The record of a job of this process that ends with the server.
function M.end_for_shutdown(id, entry, why)
  if entry.result then
    -- Finished, but its end could not be written yet: say so, not that
    -- the server stopped it.
    local result = entry.result
    entry.result = nil
    record_lost(id, result, entry.unsaved)
  elseif entry.handed_off and entry.req and not entry.pid and requeue(id, entry) then
    return
  elseif entry.handed_off and entry.req and not entry.pid then
    -- (one call whose child was never spawned: it waited for a slot; the
    -- jobs do not outlive the server)
    jobs.fail_unstored(id, "Server stopped" .. (why and (" (" .. why .. ")") or "") ..
      " while the job waited to start (for a concurrency slot: settings.max_concurrency); " ..
      "its agent was never started. Re-dispatch if needed.")
  elseif entry.handed_off then
    jobs.fail_unstored(id, "Server stopped" .. (why and (" (" .. why .. ")") or "") ..
      " while the job was running: a call handed off to a job runs in the server " ..
      "process that took the call, and its subprocess was killed with it. Re-dispatch " ..
      "if needed (dispatch_async jobs can outlive the server: settings.jobs_outlive_server).")
  else
    jobs.fail_unstored(id, "Server stopped while the job was running (agent-dispatch " ..
      "serve exited); its subprocess was killed. Re-dispatch if needed.")
  end
end

--- F35: the compact ref payload for a stored result.
function M.ref_payload(rec, result, chars)
  chars = math.max(0, math.min(100000, chars or 500))
  local text = result.result or ""
  local size = util.ulen(text)
  local out = json.object({ ref = rec.id, agent = result.agent, success = result.success,
    size = size, summary_chars = chars > 0 and math.min(size, chars) or 0,
    summary = chars > 0 and util.cut(text, chars) or "",
    session_id = result.session_id, cost_usd = result.cost_usd,
    duration_ms = result.duration_ms, num_turns = result.num_turns, error = result.error,
    error_type = result.error_type, hint = result.hint, parsed_result = result.parsed_result,
    structured_output = result.structured_output,
    budget_exceeded = result.budget_exceeded, cached = result.cached },
    { "ref", "agent", "success", "size", "summary_chars", "summary", "session_id",
      "cost_usd", "duration_ms", "num_turns", "error", "error_type", "denied_tools",
      "hint", "parsed_result", "structured_output", "budget_exceeded", "cached" })
  if result.denied_tools and #result.denied_tools > 0 then out.denied_tools = result.denied_tools end
  return out
end

--- Stores a result as a finished job and returns its ref payload.
function M.store_ref(fields, result, chars)
  local stored = util.copy(result)
  stored.cached = nil
  local ok, rec = pcall(jobs.create_completed, fields, stored)
  if ok then return M.ref_payload(rec, result, chars) end
  if type(rec) == "table" and rec.type == "cancelled" then error(rec, 0) end
  -- The answer is in hand (and paid for): a store that cannot take it (a
  -- full disk) gives it back whole rather than lose it.
  local r = util.copy(result)
  local note = "return_ref: the result could not be stored (" .. message_of(rec) ..
    "), so here it is in full."
  r.hint = r.hint and (r.hint .. " " .. note) or note
  return r
end

return M
