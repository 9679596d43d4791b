-- Start one background job per agent, keep working, then collect every
-- result. Each job is a record on disk (agent-dispatch jobs / job ID).
--
--   agent-dispatch run examples/async_batch.lua "task for every agent"
local ad = require "agent_dispatch"

local task = ... or "Summarize the open TODOs in this repository."
local ids = {}
for _, a in ipairs(ad.agents()) do
  ids[#ids + 1] = ad.async{ agent = a.name, task = task, caller = "async_batch.lua" }
  ad.log("started", ids[#ids], "on", a.name)
end

local failed = 0
for _, id in ipairs(ids) do
  local rec, timed_out = ad.wait(id, 1800)
  if timed_out then
    ad.log(id, "still running after 30 minutes; cancelling")
    ad.cancel(id)
    failed = failed + 1
  elseif rec.status ~= "done" then
    ad.log(id, rec.status, rec.error or "")
    failed = failed + 1
  else
    print(("## %s\n%s\n"):format(rec.agent, rec.result.result))
  end
end
return failed == 0
