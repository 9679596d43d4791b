-- core.proc.spawn{env = list, env_add = "NAME=value"}: the child gets the
-- list and the one more variable (a dispatch's trace context next to the
-- environment shared by every child), and the list is left as it was.
-- Run: agent-dispatch run tests/lua/proc_env_add_test.lua
local here = arg[0]:match("(.*/)") or "./"
local tap = dofile(here .. "tap.lua")
local test, eq = tap.test, tap.eq
local core = require "ad.core"

-- The environment the child sees, one "NAME=value" a line.
local function child_env(opts)
  opts.argv = { "/usr/bin/env" }
  local p = assert(core.proc.spawn(opts))
  local lines = {}
  while true do
    local l = p:read_line()
    if not l then break end
    lines[#lines + 1] = l
  end
  p:wait()
  return table.concat(lines, "\n")
end

test("env_add is one more variable after env", function()
  local env = { "A_ONE=1", "A_TWO=2" }
  eq(child_env{ env = env, env_add = "AGENT_DISPATCH_TRACE=abc:def::" },
    "A_ONE=1\nA_TWO=2\nAGENT_DISPATCH_TRACE=abc:def::")
  eq(#env, 2, "the shared list is not changed")
  eq(child_env{ env = env }, "A_ONE=1\nA_TWO=2", "without env_add: env alone")
end)

test("a list with a non-string is refused, argv and env alike", function()
  for _, opts in ipairs({ { argv = { "/usr/bin/env", 1 } },
                          { argv = { "/usr/bin/env" }, env = { "A=1", {} } },
                          { argv = { "/usr/bin/env" }, env = { "A=1", 2 }, env_add = "B=2" },
                          { argv = { "/usr/bin/env" }, env = "A=1" } }) do
    local ok, err = pcall(core.proc.spawn, opts)
    eq(ok, false)
    local field = opts.env and "env" or "argv"
    eq(tostring(err):find("'" .. field .. "' must be a list of strings", 1, true) ~= nil, true, tostring(err))
  end
end)

return tap.done()
