local core = require "ad.core"
local M = {}
function M.main(args)
  io.stderr:write("hello from main ", tostring(#args), "\n")
  local p = assert(core.process{argv = {"/bin/sh", "-c", "echo one; echo two >&2; sleep 0.2; echo three"}})
  while true do
    local l = p:read_line()
    if not l then break end
    print("line", l)
  end
  local info = p:wait()
  print("exit", info.exit_code, info.stderr)
  local t = core.spawn(function(x) core.sleep(0.1) return x * 2 end, 21)
  print(t:wait())
  return 0
end
return M
