--- `agent-dispatch run SCRIPT.lua [ARGS...] [--json]`: runs a batch script
--- as a task with the agent_dispatch module. The script receives its
--- arguments as `...` and as `arg`; its return value decides the exit
--- status (false -> 1, an integer -> that status, anything else -> 0) and
--- is printed as JSON with --json. A runtime error prints file:line and
--- the message and exits 1; Ctrl-C cancels every running child and exits
--- 130.
local core = require "ad.core"
local json = require "ad.json"

local M = {}

function M.main(argv)
  local as_json = false
  local rest = {}
  for _, a in ipairs(argv) do
    if a == "--json" and #rest == 0 then as_json = true else rest[#rest + 1] = a end
  end
  local path = table.remove(rest, 1)
  if not path then
    io.stderr:write("Usage: agent-dispatch run SCRIPT.lua [ARGS...]\n")
    return 2
  end
  local src, msg = core.read_file(path)
  if not src then
    io.stderr:write("Error: cannot read script ", path, ": ", msg, "\n")
    return 1
  end
  local chunk, lerr = load(src, "@" .. path, "t")
  if not chunk then
    io.stderr:write("Error: ", lerr, "\n")
    return 1
  end
  local api = require "agent_dispatch"
  api.args = rest
  -- Hook scripts apply to scripts too (their custom tools are unused here).
  require("ad.plugins").load(function() end, {})
  _G.arg = { [0] = path, table.unpack(rest) }
  local main = core.spawn(function()
    return xpcall(chunk, function(e)
      if type(e) == "table" and e.type == "cancelled" then return e end
      return debug.traceback(tostring(e), 2)
    end, table.unpack(rest))
  end)
  local watcher = core.spawn(function()
    local sig = core.wait_signal()
    if sig then main:cancel() end
    return sig
  end)
  local ok, pcall_ok, value = main:wait()
  local sig_done = watcher:done()
  watcher:cancel()
  if not ok then
    -- The main task itself was cancelled before it could catch anything.
    io.stderr:write("agent-dispatch: interrupted\n")
    return 130
  end
  if not pcall_ok then
    if type(value) == "table" and value.type == "cancelled" then
      io.stderr:write("agent-dispatch: interrupted; every running child was stopped\n")
      return 130
    end
    io.stderr:write("Error: ", tostring(value), "\n")
    return 1
  end
  if sig_done then return 130 end
  if as_json then
    io.stdout:write(json.encode(value == nil and json.null or value), "\n")
  end
  if value == false then return 1 end
  if math.type(value) == "integer" then return value end
  return 0
end

return M
