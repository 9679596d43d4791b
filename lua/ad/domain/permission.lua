--- The permission modes an agent may have: the values the claude CLI
--- accepts for --permission-mode (it rejects any other value and the
--- dispatch fails), checked where a mode is set (CLI add/update, the MCP
--- add_agent/update_agent tools) instead of when claude refuses to start.
local util = require "ad.infra.util"
local suggest = require "ad.infra.suggest"

local M = {}

M.MODES = { "default", "plan", "acceptEdits", "bypassPermissions", "dontAsk", "auto", "manual" }

--- nil when mode is a value claude accepts (surrounding blanks ignored),
--- else the problem: "'<mode>' is not one of <modes>. Did you mean ...?"
--- ("none" and "" clear the mode; callers handle them before).
function M.problem(mode)
  local m = util.strip(mode)
  for _, k in ipairs(M.MODES) do
    if k == m then return nil end
  end
  return util.repr(mode) .. " is not one of " .. table.concat(M.MODES, ", ") ..
    " (or none to clear it)." .. suggest.hint(m, M.MODES)
end

return M
