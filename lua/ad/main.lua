--- Entry point called by the C core with the process arguments
--- (args[0] is the program). Returns the exit status.
local M = {}

--- The message handler of the top level (also used by tasks the CLI runs
--- a command in, so an error there reads the same).
function M.on_error(e)
  if type(e) == "table" and (e.message or e.type) then return e end
  local msg = tostring(e)
  -- A user's override that cannot be loaded is their file's problem, not
  -- ours: name the file and line, no traceback.
  if msg:find("refusing to load ", 1, true) or msg:find("error loading module ", 1, true) then
    return { message = msg, user = true }
  end
  -- An error raised in an override of the user's own (their Lua
  -- directory) is theirs to fix too: their file and line, and how to go
  -- back to the shipped module.
  local loaded, tools = pcall(require, "ad.tools")
  local file = loaded and tools.override_file(msg)
  if file then
    return { message = msg:match("^[^\n]*"), user = true, hint = tools.override_hint(file) }
  end
  return { message = debug.traceback(msg, 2) }
end

function M.main(args)
  local argv = {}
  for i = 1, #args do argv[i] = args[i] end
  -- The trace context a dispatching parent gave this process: read, then
  -- removed from the environment before anything can start a process.
  if os.getenv("AGENT_DISPATCH_TRACE") or os.getenv("AGENT_DISPATCH_TRACE_FILE") then
    require("ad.domain.trace").inherited()
  end
  -- `serve` is started by Claude Code for every session: skip loading the
  -- CLI so the handshake is answered sooner.
  local entry = (#argv == 1 and argv[1] == "serve")
    and function() return require("ad.protocol.mcp").serve() end
    or require("ad.cli").main
  -- The detached runner of one job (ad.domain.async.submit starts it):
  -- not a user command, so not in the CLI's table or its help.
  if argv[1] == "__job-runner" and #argv == 2 then
    entry = function() return require("ad.domain.jobrunner").main(argv[2]) end
  end
  -- The keeper taking over handed-off calls (src/keeper.c execs it).
  if argv[1] == "__keeper-run" then
    entry = function() return require("ad.domain.keeper").main(table.move(argv, 2, #argv, 1, {})) end
  end
  local ok, code = xpcall(entry, M.on_error, argv)
  -- Children answered at their result end before a command does; a
  -- server's end with it (ad.domain.live_run).
  local ends = package.loaded["ad.domain.live_run"]
  if ends and argv[1] ~= "serve" then ends.wait_ends() end
  if ok then return code end
  if type(code) == "table" and code.type == "cancelled" then return 130 end
  if type(code) == "table" and code.type == "io" then
    local msg, hint = require("ad.infra.errors.render").io(code)
    io.stderr:write("agent-dispatch: I/O error: ", msg, "\n", hint, "\n")
    return 1
  end
  if type(code) == "table" and code.user then
    io.stderr:write("agent-dispatch: ", code.message, "\n")
    if code.hint then io.stderr:write(code.hint, "\n") end
    return 1
  end
  io.stderr:write("agent-dispatch: internal error: ", tostring(type(code) == "table" and code.message or code), "\n")
  return 1
end

return M
