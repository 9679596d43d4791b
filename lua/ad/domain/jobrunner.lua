--- The detached job runner: `agent-dispatch __job-runner ID`, started by
--- ad.domain.async.submit in its own session (not a child of the server,
--- so it outlives it). It names itself as the job's owner, rebuilds the
--- request from the record (agent, task, context, caller, goal and
--- `request`) with the agent's configuration as agents.yaml says when the
--- job starts, runs the job's worker (ad.domain.async.start: the start
--- gate, the progress tail, the result) and exits. Its child keeps
--- PR_SET_PDEATHSIG to it: a runner killed takes its child along, and the
--- next server settles the job as failed at once.
local core = require "ad.core"
local jobs = require "ad.storage.jobs"

local M = {}

local function message_of(e)
  return type(e) == "table" and tostring(e.message) or tostring(e)
end

-- The request of a pending record, or nil and why it cannot run.
local function request_of(rec)
  local config = require "ad.storage.config"
  local cfg, err = config.load()
  if not cfg then
    return nil, require("ad.infra.errors.render").load_line(err)
  end
  require("ad.storage.jobs").share_limit(cfg.settings.max_concurrency)
  local q = type(rec.request) == "table" and rec.request or {}
  -- The context has the group's shared context folded in already: the
  -- group is not folded again, only named for hooks.
  local req, msg = require("ad.domain.request").build(cfg, { agent = rec.agent,
    task = rec.task, context = rec.context, caller = rec.caller, goal = rec.goal,
    response_format = q.response_format, response_schema = q.response_schema,
    session_id = q.session_id,
    timeout = tonumber(q.timeout) }, { composed = true })
  if not req then return nil, msg end
  req.group = q.group
  -- The tree the job was submitted in: its worker ends the job's span.
  local t = type(q.trace) == "table" and q.trace
  if t and type(t.trace_id) == "string" and type(t.span_id) == "string" then
    req.trace = { trace_id = t.trace_id, parent_id = type(t.parent_id) == "string" and t.parent_id or nil,
      cap = tonumber(t.cap), holders = type(t.holders) == "table" and t.holders or {} }
    req.span_kind, req.span_id, req.span_start, req.job_id = "async", t.span_id, tonumber(t.start), rec.id
  end
  return req
end

-- Ends the span of a job that never started (cancelled while pending, or
-- it could not start): the submitting process started it.
local function end_span(rec, status)
  local q = type(rec.request) == "table" and rec.request or {}
  local t = q.trace
  if type(t) == "table" and type(t.trace_id) == "string" and type(t.span_id) == "string" then
    local trace = require "ad.domain.trace"
    local span = trace.record({ trace_id = t.trace_id, parent_id = t.parent_id },
      { kind = "async", span_id = t.span_id, start = tonumber(t.start), agent = rec.agent,
        task = rec.task, caller = rec.caller, goal = rec.goal, job_id = rec.id })
    trace.finish(span, status)
  end
end

--- Runs job id to its end. Returns the exit status (0: the job ran or was
--- no longer pending; 1: it could not start, recorded as failed).
function M.main(id)
  if type(id) ~= "string" or not jobs.valid(id) then
    io.stderr:write("agent-dispatch: __job-runner: expected a job id\n")
    return 2
  end
  -- Owner first: from here on a server that starts sees a live owner.
  if not jobs.set_owner(id, jobs.server_identity()) then return 0 end
  local rec = jobs.get(id)
  if not rec or rec.status ~= "pending" then
    if rec and jobs.TERMINAL[rec.status] then
      end_span(rec, rec.status == "cancelled" and "cancelled" or "error")
    end
    return 0
  end
  local ok, req, msg = pcall(request_of, rec)
  if not ok then req, msg = nil, message_of(req) end
  if not req then
    jobs.fail(id, "The job could not start: " .. tostring(msg))
    end_span(rec, "error")
    return 1
  end
  local plugins = require "ad.domain.plugins"
  pcall(plugins.load, function() end, {})
  -- User hooks run in the worker under the same runaway-code budget as
  -- in a server (the worker inherits it from this task).
  core.task.set_budget(plugins.CALL_BUDGET)
  local entry = require("ad.domain.async").start(id, req)
  -- A shutdown signal (the machine stopping) ends the job honestly
  -- instead of leaving a record that says it is running.
  local watcher = core.task.spawn(function()
    local sig = core.signal.wait()
    if sig then
      jobs.fail_unstored(id, "The job runner was stopped (" .. sig .. ") while the job " ..
        "was running; its subprocess was killed. Re-dispatch if needed.")
      entry.task:cancel()
    end
  end)
  entry.done:wait()
  watcher:cancel()
  return 0
end

return M
