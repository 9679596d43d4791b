-- Dependency-upgrade sweep over a group: every member checks its own
-- dependencies (with the group's shared context), concurrently, and
-- answers in JSON; the script prints one table.
--
--   agent-dispatch run examples/upgrade_sweep.lua GROUP [PACKAGE]
local ad = require "agent_dispatch"

local group, package = ...
if not group then
  ad.log("usage: agent-dispatch run examples/upgrade_sweep.lua GROUP [PACKAGE]")
  return 2
end
local cfg = ad.config()
local g = cfg.groups[group]
if not g then
  ad.log("unknown group " .. group)
  return false
end

local batch = {}
for _, m in ipairs(g.members) do
  batch[#batch + 1] = {
    agent = m.agent, group = group, response_format = "json",
    caller = "upgrade_sweep.lua", goal = "keep dependencies current",
    task = (package and ("Is " .. package .. " used here, and at which version? ") or
            "Which direct dependencies are outdated? ") ..
           'Answer as {"outdated": [{"name": ..., "current": ..., "latest": ...}]}.',
  }
end

local ok = true
for _, r in ipairs(ad.parallel(batch)) do
  if not r.success then
    ok = false
    print(("%-12s ERROR %s"):format(r.agent, r.error))
  else
    local parsed = r.parsed_result
    local n = type(parsed) == "table" and type(parsed.outdated) == "table" and #parsed.outdated
    print(("%-12s %s"):format(r.agent, n and (n .. " outdated") or ("(free text) " .. r.result:sub(1, 60))))
  end
end
return ok
