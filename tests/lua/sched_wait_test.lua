-- Waiting operations called where the task cannot yield (a table.sort
-- comparator, a string.gsub callback, a metamethod called from C, a
-- coroutine.wrap body) raise a clear error and leave nothing behind: a
-- later wait of the same kind waits its full time and the limiter's
-- accounting is intact.
-- Run: agent-dispatch run tests/lua/sched_wait_test.lua
local here = arg[0]:match("(.*/)") or "./"
local tap = dofile(here .. "tap.lua")
local test, eq, ok, has = tap.test, tap.eq, tap.ok, tap.has
local core = require "ad.core"

local CLEAR = "must be called from a task"

-- Each way of calling fn from a context that cannot yield. fn must raise;
-- the error is returned.
local CONTEXTS = {
  ["table.sort"] = function(fn)
    local ok_, err = pcall(table.sort, { 3, 1, 2 }, function(a, b) fn() return a < b end)
    return ok_, err
  end,
  ["string.gsub"] = function(fn)
    return pcall(string.gsub, "abc", "%w", function() fn() end)
  end,
  ["__lt from table.sort"] = function(fn)
    local mt = { __lt = function(a, b) fn() return a.v < b.v end }
    local t = { setmetatable({ v = 2 }, mt), setmetatable({ v = 1 }, mt) }
    return pcall(table.sort, t)
  end,
  ["__index from table.concat"] = function(fn)
    local t = setmetatable({}, { __index = function() fn() return "x" end })
    return pcall(table.concat, t, "", 1, 2)
  end,
  ["coroutine.wrap"] = function(fn)
    return pcall(coroutine.wrap(function() fn() end))
  end,
}

local function each_context(what, op)
  for name, call in pairs(CONTEXTS) do
    local ok_, err = call(op)
    ok(not ok_, what .. " from " .. name .. " must fail")
    has(tostring(err), CLEAR, what .. " from " .. name)
  end
end

local function elapsed(fn)
  local t0 = core.task.now()
  local a, b = fn()
  return core.task.now() - t0, a, b
end

test("sleep: refused where it cannot yield; the next sleep waits its full time", function()
  each_context("sleep", function() core.task.sleep(0.05) end)
  local dt, r = elapsed(function() return core.task.sleep(0.3) end)
  eq(r, true, "sleep result")
  ok(dt >= 0.28, "later sleep waited its full time (waited " .. dt .. " s)")
end)

test("join: refused where it cannot yield; a later join waits for the task", function()
  local sleeper = core.task.spawn(function() core.task.sleep(0.2) return "late" end)
  each_context("task:wait", function() sleeper:wait() end)
  -- The refused joins must not wake this task when the sleeper ends.
  local dt = elapsed(function() return core.task.sleep(0.5) end)
  ok(dt >= 0.48, "a sleep during the join target's end waited its full time (waited " .. dt .. " s)")
  ok(sleeper:done(), "the sleeper ended meanwhile")
  local other = core.task.spawn(function() core.task.sleep(0.05) return "early" end)
  local ok1, v1 = other:wait()
  ok(ok1, "join ok"); eq(v1, "early")
  local ok2, v2 = sleeper:wait()
  ok(ok2, "join ok")
  eq(v2, "late", "join result")
end)

test("event wait: refused where it cannot yield; set() wakes only real waiters", function()
  local ev = core.task.event()
  each_context("ev:wait", function() ev:wait(0.05) end)
  each_context("ev:wait (no timeout)", function() ev:wait() end)
  local dt, v, err = elapsed(function() return ev:wait(0.3) end)
  eq(v, nil); eq(err, "timeout")
  ok(dt >= 0.28, "later event wait waited its full time (waited " .. dt .. " s)")
  local ev2 = core.task.event()
  each_context("ev2:wait", function() ev2:wait() end)
  core.task.spawn(function() core.task.sleep(0.05) ev2:set("go") end)
  eq(ev2:wait(2), "go", "event value")
end)

test("acquire: refused where it cannot yield; no phantom waiter takes a slot", function()
  local before = core.limiter.stats()
  core.limiter.set_limit(1)
  local slot = core.limiter.acquire()
  ok(slot, "first slot")
  each_context("acquire", function() core.limiter.acquire() end)
  local st = core.limiter.stats()
  eq(st.waiting, 0, "no waiter left behind")
  eq(st.live, before.live + 1, "live count")
  local got
  local w = core.task.spawn(function()
    local s = core.limiter.acquire()
    got = s ~= nil
    if s then s:release() end
    return got
  end)
  core.task.sleep(0.05)
  eq(core.limiter.stats().waiting, 1, "the real waiter queues")
  slot:release()
  local okw, r = w:wait()
  ok(okw and r, "the next acquire got the freed slot")
  local s2 = core.limiter.acquire()
  ok(s2, "slot free again")
  s2:release()
  eq(core.limiter.stats().live, before.live, "accounting back to where it was")
  core.limiter.set_limit(before.limit)
end)

test("lock wait: refused where it cannot yield; a later wait waits", function()
  local dir = os.getenv("TMPDIR") or "/tmp"
  local path = dir .. "/ad-sched-wait-" .. core.sys.getpid() .. ".lock"
  local held = core.fs.lock(path, 1)
  ok(held, "lock taken")
  each_context("lock", function() core.fs.lock(path, 0.05) end)
  local dt, l2, err = elapsed(function() return core.fs.lock(path, 0.3) end)
  eq(l2, nil); eq(err, "timeout")
  ok(dt >= 0.28, "later lock wait waited its full time (waited " .. dt .. " s)")
  held:unlock()
  local l3 = core.fs.lock(path, 1)
  ok(l3, "lock free again")
  l3:unlock()
  core.fs.unlink(path)
end)

test("process read_line and wait: refused where they cannot yield", function()
  local p = assert(core.proc.spawn{ argv = { "/bin/sh", "-c", "sleep 0.3; echo hi" } })
  each_context("p:read_line", function() p:read_line() end)
  each_context("p:wait", function() p:wait() end)
  local dt, line = elapsed(function() return p:read_line() end)
  eq(line, "hi", "the line arrives")
  ok(dt >= 0.2, "read_line waited for the line (waited " .. dt .. " s)")
  eq(p:read_line(), nil, "end of output")
  local info = p:wait()
  eq(info.exit_code, 0, "exit code")
  p:close()
end)

test("job watch: refused where it cannot yield; a later wait waits", function()
  local dir = os.getenv("TMPDIR") or "/tmp"
  local w = core.jobs.watch(dir, "ad-none-" .. core.sys.getpid())
  each_context("watch:wait", function() w:wait(0.05) end)
  local dt, v, err = elapsed(function() return w:wait(0.3) end)
  w:close()
  eq(v, nil); eq(err, "timeout")
  ok(dt >= 0.28, "later wait waited its full time (waited " .. dt .. " s)")
end)

test("job watch: a change made after arming and before the wait ends the wait at once", function()
  local dir = os.getenv("TMPDIR") or "/tmp"
  local name = "ad-watch-" .. core.sys.getpid()
  local w = core.jobs.watch(dir, name)
  assert(core.fs.write_atomic(dir .. "/" .. name, "x"))
  core.task.sleep(0.05) -- the change is seen by the loop before anyone waits
  local dt, v = elapsed(function() return w:wait(5) end)
  eq(v, true); ok(dt < 0.5, "returned at once (" .. dt .. " s)")
  eq((w:wait(5)), true, "a fired watch stays fired")
  w:close()
  os.remove(dir .. "/" .. name)
  local w2 = core.jobs.watch(dir, name .. "-other")
  core.task.spawn(function() core.task.sleep(0.05) w2:fire() end)
  dt, v = elapsed(function() return w2:wait(5) end)
  eq(v, true); ok(dt < 0.5, "fire() wakes the waiter (" .. dt .. " s)")
  w2:close()
end)

test("signal wait: refused where it cannot yield; leaves no waiter behind", function()
  each_context("wait_signal", function() core.signal.wait() end)
  -- Refused calls take none of the (few) signal waiter places.
  local waiters = {}
  for i = 1, 6 do waiters[i] = core.task.spawn(function() return core.signal.wait() end) end
  core.task.sleep(0.05)
  for i = 1, 6 do
    if waiters[i]:done() then
      error("signal waiter " .. i .. " failed: " .. tostring(select(2, waiters[i]:wait())))
    end
  end
  for i = 1, 6 do waiters[i]:cancel() end
  for i = 1, 6 do waiters[i]:wait() end
end)

test("a metamethod called from Lua code may wait", function()
  local t = setmetatable({}, { __index = function(_, k) core.task.sleep(0.05) return k end })
  local dt, v = elapsed(function() return t.key end)
  eq(v, "key")
  ok(dt >= 0.04, "__index waited")
end)

test("after all that, sleeps still wait their full time", function()
  local dt = elapsed(function() return core.task.sleep(0.2) end)
  ok(dt >= 0.18, "sleep waited (" .. dt .. " s)")
  local dt2 = elapsed(function() return core.task.sleep(0.2) end)
  ok(dt2 >= 0.18, "sleep waited (" .. dt2 .. " s)")
end)

return tap.done()
