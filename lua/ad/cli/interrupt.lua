--- Shutdown signals for CLI commands. guard(fn, ...) runs fn(...) as a
--- task; SIGINT, SIGTERM or SIGHUP cancels it, which kills and reaps the
--- process group of every child it was waiting for (the cancel path of
--- core.proc), and the command exits 128 + the signal number (130 for
--- Ctrl-C). Without the guard the default action would end this process
--- at once and leave its children running, re-parented to init.
local core = require "ad.core"

local M = {}

M.STATUS = { SIGINT = 130, SIGTERM = 143, SIGHUP = 129 }

--- Returns fn's first result, or the signal's exit status.
function M.guard(fn, ...)
  local main = core.task.spawn(function(...)
    return xpcall(fn, require("ad.main").on_error, ...)
  end, ...)
  local got
  local watcher = core.task.spawn(function()
    got = core.signal.wait()
    if got then main:cancel() end
  end)
  local ok, pcall_ok, value = main:wait()
  watcher:cancel()
  if got then
    io.stderr:write("agent-dispatch: interrupted (", got, "); every running child was stopped\n")
    return M.STATUS[got] or 130
  end
  if not ok then error(pcall_ok, 0) end
  if not pcall_ok then
    error(value, 0) -- already framed (traceback or table) for the top level

  end
  return value
end

return M
