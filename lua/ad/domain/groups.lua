--- Groups: membership checks and context folding (F12). Descriptive only:
--- a group never routes or executes anything.
local util = require "ad.infra.util"
local config = require "ad.storage.config"

local M = {}

local function names(list)
  return #list > 0 and table.concat(list, ", ") or "(none configured)"
end

--- nil when agent may be dispatched under group, else the error message.
function M.check(cfg, group, agent)
  local g = cfg.groups[group]
  if not g then
    return "Unknown group: " .. util.repr(group) .. ". Available: " .. names(cfg.group_names)
  end
  if #g.members == 0 then
    return "Group " .. util.repr(group) .. " has no members yet. Add some: " ..
      "agent-dispatch group remove " .. group .. " && agent-dispatch group add " ..
      group .. " --member <agent> (or edit agents.yaml)"
  end
  for _, m in ipairs(g.members) do
    if m.agent == agent then return nil end
  end
  local ms = {}
  for _, m in ipairs(g.members) do ms[#ms + 1] = m.agent end
  return "Agent " .. util.repr(agent) .. " is not a member of group " ..
    util.repr(group) .. ". Members: " .. table.concat(ms, ", ")
end

--- The context a member receives: the group's shared_context folded in
--- front of the caller's context. Pure; same input, same bytes.
function M.fold(cfg, group, context)
  local g = group and cfg.groups[group]
  local shared = g and util.strip(g.shared_context or "") or ""
  if shared == "" then return context end
  local ctx = util.strip(context or "")
  local head = "Shared context (group '" .. group .. "'):\n" .. shared
  if ctx ~= "" then return head .. "\n\n" .. ctx end
  return head
end

M.unknown_members = config.unknown_members

return M
