--- Completion helper (installed; run by the shell completions as
--- `agent-dispatch run names.lua agents|groups|jobs`): one name per line
--- from the config and the jobs directory. Prints nothing when they
--- cannot be read: completion must never print errors.
local kind = ...
local ok, names = pcall(function()
  local list = {}
  if kind == "agents" or kind == "groups" then
    local cfg = require("ad.storage.config").load(require("ad.storage.config").path())
    for _, n in ipairs(cfg and cfg[kind == "agents" and "agent_names" or "group_names"] or {}) do
      list[#list + 1] = n
    end
  elseif kind == "jobs" then
    for _, rec in ipairs(require("ad.storage.jobs").list(nil, 200)) do list[#list + 1] = rec.id end
  end
  return list
end)
if ok then
  for _, n in ipairs(names) do io.stdout:write(n, "\n") end
end
