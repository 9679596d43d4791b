--- dispatch_steer: a message into a running job's agent (ad.domain.steer).
local json = require "ad.infra.json"
local util = require "ad.infra.util"
local tools = require "ad.tools"
local jobs = util.lazy "ad.storage.jobs"
local steer = util.lazy "ad.domain.steer"

tools.define{
  name = "dispatch_steer",
  title = "Steer a running job",
  description = "Send guidance to the agent of a running job (dispatch_async, " ..
    "or a dispatch handed off to a job) as a user message; its final answer " ..
    "reflects it. Needs the live transport (settings.transport). Outcomes: " ..
    "delivered, not_running (not started, already answered or ended), " ..
    "not_steerable (the one-shot transport), error. Each steer is recorded on the job.",
  params = { { name = "job_id", type = "string", required = true },
             { name = "message", type = "string", required = true,
               description = "What the agent should take into account, as you would type it." } },
  annotations = json.object({ readOnlyHint = false, destructiveHint = false,
    idempotentHint = false, openWorldHint = false },
    { "readOnlyHint", "destructiveHint", "idempotentHint", "openWorldHint" }),
  guard = "io",
  handler = function(a, ctx)
    if not jobs.valid(a.job_id) then
      return tools.envelope("Invalid job_id format: " .. util.repr(tostring(a.job_id)) ..
        " (expected a 32-char hex id)")
    end
    local r = steer.steer(a.job_id, a.message, "dispatch_steer")
    if not r then return tools.envelope("Job not found: " .. a.job_id) end
    ctx.log("info", "Steer " .. a.job_id .. ": " .. r.outcome)
    if not r.delivered then r.error = r.message end
    return r
  end,
}
