--- `agent-dispatch steer JOB MESSAGE`: guidance into a running job's agent
--- (ad.domain.steer). Returns {name = command}; see ad.cli for the shape.
local common = require "ad.cli.common"
local json = require "ad.infra.json"

local out, err = common.out, common.err

local C = {}

C.steer = {
  usage = "ID MESSAGE", summary = "Send guidance to the agent of a running job (live transport).",
  positionals = { "ID", "MESSAGE" }, min = 2, max = 2,
  options = { common.JSON_OPT },
  run = function(o, pos)
    local id, code = common.resolve_job_id(pos[1])
    if not id then return code end
    local r = require("ad.domain.steer").steer(id, pos[2], "cli steer")
    if not r then err("Job not found: ", id) return 1 end
    if o.json then
      out(json.encode(r))
    elseif r.delivered then
      out("Delivered to job ", id, ".")
    else
      err("Not delivered (", r.outcome, "): ", r.message)
    end
    return r.delivered and 0 or 1
  end,
}

return C
