--- Background dispatches (F31, F52-F55) and result references (F35): the
--- same runner and the same limiter as every other dispatch, one task per
--- job, on the server's loop.
local core = require "ad.core"
local json = require "ad.json"
local util = require "ad.util"
local jobs = require "ad.jobs"
local runner = require "ad.runner"

local M = {}

M.TAIL_LINES, M.TAIL_CHARS, M.FLUSH_EVERY = 20, 300, 1.0

--- Jobs whose worker runs in this process: id -> {task=, done=event}.
local registry = {}

function M.local_job(id) return registry[id] end

--- Starts the worker of a pending job. req is a runner request (name,
--- agent with the timeout override applied, settings, task, context,
--- caller, goal, response_format). hooks.on_done(id, result) is optional.
function M.start(id, req, hooks)
  local entry = { done = core.event() }
  registry[id] = entry
  local tail, last_write = {}, nil
  local function flush()
    if #tail > 0 then jobs.update_progress(id, tail) end
    last_write = core.now()
  end
  entry.task = core.spawn(function()
    local r = util.copy(req)
    r.stream = true
    r.on_slot = function()
      -- Cancelled while queued: the record says so and we never start.
      local rec = jobs.get(id)
      return rec ~= nil and rec.status == "pending"
    end
    r.on_spawn = function(pid)
      -- The child waits at its start gate until this returns: the record
      -- names it (durably) before it can do anything.
      local pgid, start = core.proc_identity(pid)
      local ok, rec = pcall(jobs.mark_running, id, pgid and json.object({ pid = pid,
        pgid = pgid, start = start, server_pid = core.getpid(),
        server_start = jobs.server_identity().start },
        { "pid", "pgid", "start", "server_pid", "server_start" }) or nil)
      -- Cancelled between the slot and the spawn (the lock may have made
      -- us wait), or the record could not be written: the job must not
      -- run. The runner ends the child unstarted; finish() is refused.
      return (ok and rec and pgid) and true or false
    end
    r.on_progress = function(line)
      tail[#tail + 1] = util.cut(line, M.TAIL_CHARS)
      if #tail > M.TAIL_LINES then table.remove(tail, 1) end
      if not last_write or core.now() - last_write >= M.FLUSH_EVERY then flush() end
    end
    local ok, result = pcall(runner.dispatch, r)
    if ok then
      flush()
      local rec = jobs.finish(id, result)
      if rec then require("ad.plugins").job_done(rec) end
      if hooks and hooks.on_done then pcall(hooks.on_done, id, result) end
    elseif not (type(result) == "table" and result.type == "cancelled") then
      local msg = type(result) == "table" and tostring(result.message) or tostring(result)
      io.stderr:write("agent-dispatch: job ", id, " worker crashed: ", msg, "\n")
      jobs.fail(id, "Worker crashed: " .. msg:match("^[^\n]*"))
    end
    registry[id] = nil
    entry.done:set(true)
  end)
  return entry
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
      rec, outcome = jobs.cancel(id, true)
      if outcome == "cancelled_running" then
        entry.task:cancel() -- kills the child's process group
        message = "The job was running; its subprocess was killed."
      end
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
    elseif rec and rec.status == "running" and not (rec.process and
        rec.process.server_pid and core.proc_identity(rec.process.server_pid)) then
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
--- worker's completion, or on a change of the job's file (another
--- process's job) - never a sleep-and-poll loop.
function M.wait(id, timeout)
  local deadline = core.now() + timeout
  while true do
    local rec = jobs.get(id)
    if not rec then return nil end
    if jobs.TERMINAL[rec.status] then return rec end
    local left = deadline - core.now()
    if left <= 0 then return rec, true end
    local entry = registry[id]
    if entry then
      entry.done:wait(left)
    else
      local ok, _, code = core.watch_dir(jobs.dir(), id .. ".json", left)
      if not ok and code and code ~= "timeout" then core.sleep(math.min(left, 0.5)) end
    end
  end
end

--- Server shutdown: every job this process runs is marked failed (so the
--- record is terminal at once, not an hour later) and its child killed.
function M.shutdown()
  local tasks = {}
  for id, entry in pairs(registry) do
    jobs.fail(id, "Server stopped while the job was running (agent-dispatch serve " ..
      "exited); its subprocess was killed. Re-dispatch if needed.")
    entry.task:cancel()
    tasks[#tasks + 1] = entry
  end
  return tasks
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
    budget_exceeded = result.budget_exceeded, cached = result.cached },
    { "ref", "agent", "success", "size", "summary_chars", "summary", "session_id",
      "cost_usd", "duration_ms", "num_turns", "error", "error_type", "denied_tools",
      "hint", "parsed_result", "budget_exceeded", "cached" })
  if result.denied_tools and #result.denied_tools > 0 then out.denied_tools = result.denied_tools end
  return out
end

--- Stores a result as a finished job and returns its ref payload.
function M.store_ref(fields, result, chars)
  local stored = util.copy(result)
  stored.cached = nil
  local rec = jobs.create_completed(fields, stored)
  return M.ref_payload(rec, result, chars)
end

return M
