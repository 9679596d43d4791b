-- Cross-repo code review: every agent named on the command line (or every
-- configured agent) reviews its own recent changes in parallel; the first
-- agent then synthesizes one report.
--
--   agent-dispatch run examples/review.lua [AGENT...] [--json]
local ad = require "agent_dispatch"

local names = { ... }
if #names == 0 then
  for _, a in ipairs(ad.agents()) do names[#names + 1] = a.name end
end
if #names == 0 then
  ad.log("no agents configured: agent-dispatch add <name> <directory>")
  return false
end

local batch = { aggregate = names[1] }
for _, name in ipairs(names) do
  batch[#batch + 1] = {
    agent = name,
    caller = "review.lua",
    goal = "nightly cross-repo review",
    task = "Review the changes of the last commit in this repository. " ..
           "List concrete bugs and risks, most severe first, with file:line.",
  }
end

local out = ad.parallel(batch)
local failed = 0
for _, r in ipairs(out.individual_results) do
  ad.log(("%-12s %s"):format(r.agent, r.success and "ok" or ("FAILED: " .. tostring(r.error))))
  if not r.success then failed = failed + 1 end
end
print(out.aggregated.result)
return { reviewed = #names, failed = failed, report = out.aggregated.result,
         ok = failed == 0 and out.aggregated.success }
