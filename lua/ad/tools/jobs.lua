--- Async job tools: dispatch_async, dispatch_status, dispatch_wait,
--- dispatch_cancel, dispatch_jobs, fetch_result, dispatch_gc.
local core = require "ad.core"
local json = require "ad.infra.json"
local util = require "ad.infra.util"
local tools = require "ad.tools"
local limits = require "ad.infra.limits"
local jobs = util.lazy "ad.storage.jobs"
local async = util.lazy "ad.domain.async"
local request = util.lazy "ad.domain.request"

local function bad_id(x)
  return tools.envelope("Invalid ref/job_id format: " .. util.repr(tostring(x)) ..
    " (expected a 32-char hex id)")
end

local function not_found(id) return tools.envelope("Job not found: " .. id) end

local RO = json.object({ readOnlyHint = true, openWorldHint = false },
                       { "readOnlyHint", "openWorldHint" })

tools.define{
  name = "dispatch_async",
  title = "Start a background dispatch",
  description = "Start a dispatch in the background and return a job_id at " ..
    "once; the agent keeps working while you do something else. Check it " ..
    "with dispatch_status (live progress), collect it with dispatch_wait, " ..
    "stop it with dispatch_cancel, or subscribe to its MCP resource " ..
    "(resource, agent-dispatch://jobs/<job_id>) to be notified when it " ..
    "changes state. The job keeps running when this server " ..
    "exits (unless settings.jobs_outlive_server is false) and any later " ..
    "server reads it by id (records on disk; " ..
    "terminal ones are purged by dispatch_gc).",
  params = {
    { name = "agent", type = "string", required = true, description = "Agent name (see list_agents)." },
    { name = "task", type = "string", required = true, description = "What the agent should do." },
    { name = "context", type = "string", default = "" },
    { name = "caller", type = "string", default = "" },
    { name = "goal", type = "string", default = "" },
    { name = "response_format", type = "string", default = "", description = "\"json\" for a JSON reply." },
    { name = "response_schema", type = "schema",
      description = "A JSON Schema (object or JSON text) the answer must match (structured_output)." },
    { name = "timeout_seconds", type = "integer", default = 0, description = limits.timeout_range() .. "; 0 = agent default." },
    { name = "tree_budget_usd", type = "number", minimum = 0,
      description = "Spend cap in USD for this delegation and everything below it; unset = settings.tree_budget_usd." },
  },
  annotations = json.object({ readOnlyHint = false, destructiveHint = true,
    idempotentHint = false, openWorldHint = true },
    { "readOnlyHint", "destructiveHint", "idempotentHint", "openWorldHint" }),
  guard = "config",
  handler = function(a, ctx)
    local req, err = request.build(ctx.cfg, a)
    if not req then return tools.envelope(err) end
    local rec = async.submit(req)
    ctx.log("info", "Started async dispatch " .. rec.id .. " to " .. a.agent)
    -- The job is also an MCP resource: a client that subscribes to it
    -- hears when it starts and ends, without polling.
    return json.object({ job_id = rec.id, status = "pending", agent = a.agent,
      resource = require("ad.protocol.resources").uri(rec.id) },
      { "job_id", "status", "agent", "resource" })
  end,
}

tools.define{
  name = "dispatch_status",
  title = "Status of a background job",
  description = "The full record of a job: status (pending, running, done, " ..
    "failed, cancelled), timestamps, the live progress tail while it runs, " ..
    "permission requests (permissions.pending: answer with dispatch_approve; " ..
    "permissions.decisions) and the result once finished.",
  params = { { name = "job_id", type = "string", required = true } },
  annotations = RO,
  guard = "io",
  handler = function(a)
    if not jobs.valid(a.job_id) then return bad_id(a.job_id) end
    return jobs.get_current(a.job_id) or not_found(a.job_id)
  end,
}

tools.define{
  name = "dispatch_wait",
  title = "Wait for a background job",
  description = "Wait until a job finishes (at most timeout_seconds, 1-3600) " ..
    "and return its record with the result. If it is still running at the " ..
    "deadline, the record comes back with timed_out_waiting: true and the " ..
    "job keeps running. If its agent waits for a permission decision, it " ..
    "returns at once with awaiting_approval: true (answer with dispatch_approve).",
  params = { { name = "job_id", type = "string", required = true },
             { name = "timeout_seconds", type = "integer", default = 60, minimum = 1, maximum = 3600 } },
  annotations = RO,
  guard = "io",
  handler = function(a, ctx)
    if not jobs.valid(a.job_id) then return bad_id(a.job_id) end
    local bound = math.max(1, math.min(3600, a.timeout_seconds))
    local rec, timed_out, asking = async.wait(a.job_id, bound, { awaiting = true })
    if not rec then return not_found(a.job_id) end
    if asking then
      -- Its agent waits for a permission decision (ad.domain.relay).
      return require("ad.domain.relay").mark_awaiting(rec)
    end
    if timed_out then
      rec.timed_out_waiting = true
      json.append_keys(rec, "timed_out_waiting")
      ctx.log("info", "Job " .. a.job_id .. " still " .. rec.status .. " after " .. bound .. "s")
    end
    return rec
  end,
}

tools.define{
  name = "dispatch_cancel",
  title = "Cancel a background job",
  description = "Cancel a job: a pending job never starts; a running job's " ..
    "subprocess (and everything it started) is killed, also when it was " ..
    "started by an earlier server process, provided it is verifiably the " ..
    "same process. A live agent is interrupted first and its session_id " ..
    "kept (resume it with dispatch_session). Outcomes: cancelled, " ..
    "cancelled_running, running, already_terminal.",
  params = { { name = "job_id", type = "string", required = true } },
  annotations = json.object({ readOnlyHint = false, destructiveHint = true,
    idempotentHint = true, openWorldHint = false },
    { "readOnlyHint", "destructiveHint", "idempotentHint", "openWorldHint" }),
  guard = "io",
  handler = function(a, ctx)
    if not jobs.valid(a.job_id) then return bad_id(a.job_id) end
    local r = async.cancel(a.job_id)
    if not r then return not_found(a.job_id) end
    ctx.log("info", "Cancel " .. a.job_id .. ": " .. r.outcome)
    return r
  end,
}

local STATUS_HELP = "cancelled, done, failed, pending, running"

tools.define{
  name = "dispatch_jobs",
  title = "List background jobs",
  description = "Jobs newest first (optionally only one status), each with " ..
    "id, agent, status, the start of its task, timestamps, success and " ..
    "cost when finished, the last progress line while running, and the " ..
    "permission requests its agent waits on (pending_permissions; answer " ..
    "with dispatch_approve).",
  params = { { name = "status", type = "string", default = "",
               description = "pending, running, done, failed, cancelled, or empty for all." },
             { name = "limit", type = "integer", default = 50, minimum = 1, maximum = 1000 } },
  annotations = RO,
  guard = "io",
  handler = function(a)
    local status = util.strip(a.status):lower()
    if status ~= "" and not ({ pending = 1, running = 1, done = 1, failed = 1, cancelled = 1 })[status] then
      return tools.envelope("Invalid status: " .. util.repr(a.status) .. ". Use one of: " ..
        STATUS_HELP .. " or empty.")
    end
    local limit = math.max(1, math.min(1000, a.limit))
    local out = json.array()
    for _, rec in ipairs(jobs.list(status ~= "" and status or nil, limit)) do
      local s = json.object({ id = rec.id, agent = rec.agent, status = rec.status,
        task = util.cut(rec.task or "", 120), created_at = rec.created_at,
        started_at = rec.started_at, completed_at = rec.completed_at },
        { "id", "agent", "status", "task", "created_at", "started_at", "completed_at",
          "success", "cost_usd", "last_progress", "error_type", "pending_permissions" })
      if type(rec.result) == "table" then
        s.success = rec.result.success
        s.cost_usd = rec.result.cost_usd
      end
      if rec.status == "running" and type(rec.progress) == "table" and #rec.progress > 0 then
        s.last_progress = rec.progress[#rec.progress]
      end
      -- Permission requests its agent waits on (ad.domain.relay).
      local perm = type(rec.permissions) == "table" and rec.permissions.pending
      if not jobs.TERMINAL[rec.status] and type(perm) == "table" and #perm > 0 then
        s.pending_permissions = perm
      end
      if rec.error then
        s.error_type = type(rec.result) == "table" and rec.result.error_type or
          (rec.status == "cancelled" and "cancelled" or "cli_error")
      end
      out[#out + 1] = s
    end
    return out
  end,
}

tools.define{
  name = "fetch_result",
  title = "Fetch a stored result",
  description = "The full result behind a ref (from return_ref=true) or an " ..
    "async job_id. max_chars > 0 cuts the result text (adding truncated " ..
    "and full_size). A job without a result yet returns its record.",
  params = { { name = "ref", type = "string", required = true },
             { name = "max_chars", type = "integer", default = 0 } },
  annotations = RO,
  guard = "io",
  handler = function(a)
    if not jobs.valid(a.ref) then return bad_id(a.ref) end
    local rec = jobs.get(a.ref)
    if not rec then return tools.envelope("Ref not found: " .. a.ref) end
    if type(rec.result) ~= "table" then return rec end
    local r = require("ad.domain.runner").result(rec.result)
    local max = math.max(0, a.max_chars)
    local text = r.result or ""
    if max > 0 and util.ulen(text) > max then
      r.full_size = util.ulen(text)
      r.result = util.cut(text, max)
      r.truncated = true
      json.append_keys(r, "truncated", "full_size")
    end
    return r
  end,
}

tools.define{
  name = "dispatch_gc",
  title = "Purge old finished jobs",
  description = "Delete finished (done, failed, cancelled) job records older " ..
    "than max_age_days, and traces not written to for that long. Pending and " ..
    "running jobs are never deleted.",
  params = { { name = "max_age_days", type = "number", default = 7 } },
  annotations = json.object({ readOnlyHint = false, destructiveHint = true,
    idempotentHint = true, openWorldHint = false },
    { "readOnlyHint", "destructiveHint", "idempotentHint", "openWorldHint" }),
  guard = "io",
  handler = function(a, ctx)
    local d = a.max_age_days
    if d ~= d or d <= 0 then return tools.envelope("max_age_days must be > 0") end
    local secs = d * 86400
    if secs == math.huge or secs ~= secs then
      return tools.envelope("max_age_days is too large (non-finite)")
    end
    local n = jobs.gc(secs)
    local nt = require("ad.storage.traces").prune(secs)
    ctx.log("info", "Purged " .. n .. " job(s) and " .. nt .. " trace(s) older than " ..
      util.num(d) .. " day(s)")
    return json.object({ purged = n, max_age_days = math.tointeger(d) or d },
                       { "purged", "max_age_days" })
  end,
}
