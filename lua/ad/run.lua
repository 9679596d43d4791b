--- `agent-dispatch run [--json] [--timeout SECONDS] SCRIPT.lua [ARGS...]`:
--- runs a batch script as a task with the agent_dispatch module. The
--- script receives its arguments as `...` and as `arg`; its return value
--- decides the exit status (false -> 1, an integer -> that status,
--- anything else -> 0) and is printed as JSON with --json. A runtime error
--- prints file:line and the message and exits 1; Ctrl-C cancels every
--- running child and exits 130; --timeout cancels the whole script the
--- same way after that many seconds and exits 124.
local core = require "ad.core"
local json = require "ad.json"

local M = {}

function M.main(argv)
  local as_json, limit = false, nil
  local rest = {}
  local i = 1
  while i <= #argv do
    local a = argv[i]
    if #rest == 0 and a == "--json" then
      as_json = true
    elseif #rest == 0 and (a == "--timeout" or a:match("^%-%-timeout=")) then
      local v = a:match("^%-%-timeout=(.*)$")
      if not v then i = i + 1; v = argv[i] end
      limit = tonumber(v)
      if not limit or limit <= 0 then
        io.stderr:write("Error: --timeout needs a positive number of seconds\n")
        return 2
      end
    else
      rest[#rest + 1] = a
    end
    i = i + 1
  end
  local path = table.remove(rest, 1)
  if not path then
    io.stderr:write("Usage: agent-dispatch run [--json] [--timeout SECONDS] SCRIPT.lua [ARGS...]\n")
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
  local timed_out = false
  local timer = limit and core.spawn(function()
    if core.sleep(limit) then
      timed_out = true
      io.stderr:write("agent-dispatch: the script ran longer than ", tostring(limit),
        " s (--timeout); stopping it\n")
      main:cancel()
    end
  end)
  local ok, pcall_ok, value = main:wait()
  local sig_done = watcher:done()
  watcher:cancel()
  if timer then timer:cancel() end
  -- Background jobs the script left running are stopped, not orphaned.
  if package.loaded["ad.async"] then package.loaded["ad.async"].shutdown() end
  if timed_out then return 124 end
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
