-- core.task.after: a deadline that runs its function on a task of its own
-- when it passes, and never once stopped (the lazy hand-off of a sync
-- dispatch arms one per call and stops it when the call ends).
-- Run: agent-dispatch run tests/lua/timer_test.lua
local here = arg[0]:match("(.*/)") or "./"
local tap = dofile(here .. "tap.lua")
local test, eq, ok = tap.test, tap.eq, tap.ok
local core = require "ad.core"

test("fires once, on a task of its own, after its time", function()
  local me, fired_on, n = core.task.current(), nil, 0
  local t0 = core.task.now()
  local at
  local timer = core.task.after(0.05, function()
    n = n + 1
    at = core.task.now()
    fired_on = core.task.current()
    core.task.sleep(0.01) -- it may wait: it runs on a task
  end)
  core.task.sleep(0.2)
  eq(n, 1, "ran once")
  ok(at - t0 >= 0.045, "not before its time")
  ok(fired_on ~= nil and fired_on ~= me, "on a task of its own")
  eq(timer:stop(), false, "stop after it fired: false")
  eq(timer:stop(), false, "a second stop: false")
end)

test("stopped before its time, it never runs", function()
  local n = 0
  local timer = core.task.after(0.05, function() n = n + 1 end)
  eq(timer:stop(), true, "stopped before firing: true")
  eq(timer:stop(), false, "stopped once")
  core.task.sleep(0.15)
  eq(n, 0, "never ran")
end)

test("a timer nobody holds is stopped when collected", function()
  local n = 0
  core.task.after(0.05, function() n = n + 1 end)
  collectgarbage()
  collectgarbage()
  core.task.sleep(0.15)
  eq(n, 0, "a collected timer never fires")
end)

test("bad arguments are refused", function()
  ok(not pcall(core.task.after, "x", function() end), "seconds must be a number")
  ok(not pcall(core.task.after, 1, nil), "fn must be a function")
end)

return tap.done()
