-- Every exit of a keeper's child reaches the server, however many end
-- while the server reads none: the keeper reports exits on a socket
-- whose buffer holds a few hundred reports, and a report that did not fit
-- was dropped, so the server waited for that child for ever (its timeout
-- did not help: the group it killed was long gone).
-- Run: agent-dispatch run tests/lua/keeper_exits_test.lua
local here = arg[0]:match("(.*/)") or "./"
local tap = dofile(here .. "tap.lua")
local test, eq = tap.test, tap.eq
local core = require "ad.core"

local N = 800 -- well past what the event socket's buffer holds

test(N .. " children of the keeper that exit while the server reads no report", function()
  local ps = {}
  -- Spawned back to back: the loop does not run between two spawns, so
  -- the server reads no exit report until the last one has started.
  for i = 1, N do
    ps[i] = assert(core.proc.spawn{ argv = { "/bin/true" }, keeper = true, timeout = 20 })
  end
  local done = core.task.event()
  local ended = 0
  local waiter = core.task.spawn(function()
    for i = 1, N do
      local info = ps[i]:wait()
      if not info.timed_out and info.exit_code == 0 then ended = ended + 1 end
      ps[i]:close()
    end
    done:set(true)
  end)
  local finished = done:wait(15)
  if not finished then waiter:cancel() end
  eq(ended, N, "every child's exit was reported (" .. ended .. " of " .. N .. ")")
end)

return tap.done()
