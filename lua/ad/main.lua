--- Entry point called by the C core with the process arguments
--- (args[0] is the program). Returns the exit status.
local M = {}

function M.main(args)
  local argv = {}
  for i = 1, #args do argv[i] = args[i] end
  local ok, code = xpcall(require("ad.cli").main, function(e)
    if type(e) == "table" and e.message then return e end
    return debug.traceback(tostring(e), 2)
  end, argv)
  if ok then return code end
  if type(code) == "table" and code.type == "cancelled" then return 130 end
  io.stderr:write("agent-dispatch: internal error: ", tostring(type(code) == "table" and code.message or code), "\n")
  return 1
end

return M
