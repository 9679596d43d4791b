--- Where the config file, its directory and the tool files are: a leaf
--- module (environment and ad.infra.util only), so that deciding whether
--- anything of the user's applies does not load the config parser.
local util = require "ad.infra.util"

local M = {}

function M.config_dir()
  local p = os.getenv("AGENT_DISPATCH_CONFIG")
  if p and p ~= "" then return util.dirname(util.expanduser(p) or p) end
  return (os.getenv("HOME") or "") .. "/.config/agent-dispatch"
end

function M.config_path()
  local p = os.getenv("AGENT_DISPATCH_CONFIG")
  if p and p ~= "" then return util.expanduser(p) or p end
  return (os.getenv("HOME") or "") .. "/.config/agent-dispatch/agents.yaml"
end

--- The directory of tool files: $AGENT_DISPATCH_TOOLS_DIR, else tools/
--- next to the config file.
function M.tools_dir()
  local d = os.getenv("AGENT_DISPATCH_TOOLS_DIR")
  if d and d ~= "" then return util.expanduser(d) or d end
  return M.config_dir() .. "/tools"
end

return M
