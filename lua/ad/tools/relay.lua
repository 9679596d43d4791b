--- The permission relay's tool: dispatch_approve answers a permission
--- request a job's agent is waiting on (ad.domain.relay).
local json = require "ad.infra.json"
local util = require "ad.infra.util"
local tools = require "ad.tools"
local approve = util.lazy "ad.domain.approve"

tools.define{
  name = "dispatch_approve",
  title = "Answer an agent's permission request",
  description = "Allow or deny a tool use an agent asked permission for (a call that " ..
    "returned status \"awaiting_approval\", or a job whose record lists " ..
    "permissions.pending). The agent gets its own input unless updated_input is " ..
    "given (an edit, recorded as such); message= is what its model sees (why, or " ..
    "what to do instead). Then dispatch_wait gets the job's answer.",
  params = {
    { name = "job_id", type = "string", required = true, description = "The job that waits." },
    { name = "request_id", type = "string", required = true,
      description = "The pending request (pending.request_id)." },
    { name = "decision", type = "string", required = true, description = "allow or deny." },
    { name = "message", type = "string", default = "",
      description = "Optional: a message for the agent's model." },
    { name = "updated_input", type = "schema",
      description = "Optional, with allow: the input the tool runs with instead (an object " ..
        "or its JSON text)." },
  },
  annotations = json.object({ readOnlyHint = false, destructiveHint = true,
    idempotentHint = false, openWorldHint = false },
    { "readOnlyHint", "destructiveHint", "idempotentHint", "openWorldHint" }),
  guard = "io",
  handler = function(a, ctx)
    local r, err = approve.post(a.job_id, a.request_id, a.decision, {
      message = util.nonempty(a.message), updated_input = a.updated_input, by = "dispatch_approve" })
    if not r then return tools.envelope(err) end
    ctx.log("info", "Permission " .. r.decision .. " sent for request " .. a.request_id ..
      " of job " .. a.job_id)
    return r
  end,
}
