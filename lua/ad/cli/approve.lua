--- The permission relay's commands: approve and deny a permission request
--- a job's agent waits on (ad.domain.approve). Returns {name = command}.
local common = require "ad.cli.common"

local out, err = common.out, common.err

local C = {}

local function answer(verdict)
  return function(o, pos)
    local id, code = common.resolve_job_id(pos[1])
    if not id then return code end
    local r, why = require("ad.domain.approve").post(id, pos[2], verdict,
      { message = o.message, by = "cli" })
    if not r then
      -- (--json: a JSON answer on stdout either way, as steer gives)
      if o.json then common.json_out(require("ad.infra.json").object({ job_id = id,
        applied = false, error = why }, { "job_id", "applied", "error" })) end
      err("Error: ", why)
      return 1
    end
    if o.json then return common.json_out(r) end
    out((verdict == "allow" and "Allowed: " or "Denied: "), tostring(r.tool), " (request ",
      r.request_id, " of job ", id, ")", r.applied and "" or (" - " .. r.hint))
    return 0
  end
end

local OPTIONS = { { "--message", arg = "M", help = "A message for the agent's model (why, or what to do instead)." },
                  common.JSON_OPT }

C.approve = {
  usage = "JOB [REQUEST] [--message M] [--json]",
  summary = "Allow a tool use a job's agent asked permission for (REQUEST: needed when several wait).",
  options = OPTIONS, positionals = { "JOB", "REQUEST" }, min = 1, max = 2,
  run = answer("allow"),
}

C.deny = {
  usage = "JOB [REQUEST] [--message M] [--json]",
  summary = "Deny a tool use a job's agent asked permission for; the agent's model sees --message.",
  options = OPTIONS, positionals = { "JOB", "REQUEST" }, min = 1, max = 2,
  run = answer("deny"),
}

return C
