-- The Lua collector works while the loop is idle, and still bounds the
-- heap when no idle moment comes (src/sched.c, "Collection while idle").
-- Run: agent-dispatch run tests/lua/gc_idle_test.lua
local here = arg[0]:match("(.*/)") or "./"
local tap = dofile(here .. "tap.lua")
local test, ok = tap.test, tap.ok
local core = require "ad.core"

local function kb() return collectgarbage("count") end

-- Tables nobody keeps, about n KiB of them.
local function garbage(n)
  for i = 1, n * 1024 // 64 do
    local t = { i }
    t[2] = t
  end
end

-- Garbage until the heap holds `to` KiB (past half the live heap, below
-- twice it: the automatic trigger).
local function garbage_to(to)
  while kb() < to do garbage(4) end
end

local function live()
  collectgarbage()
  collectgarbage()
  return kb()
end

test("a burst of garbage is collected while the loop is idle", function()
  local base = live()
  garbage_to(base * 1.85)
  local burst = kb()
  ok(burst > base + 200, "the burst left garbage (" .. burst .. " KiB, live " .. base .. ")")
  core.task.sleep(0.3) -- the only task: the loop is idle
  local after = kb()
  ok(after < base + 64, "collected while idle: " .. after .. " KiB, live " .. base
     .. ", " .. burst .. " after the burst")
end)

test("a little garbage is collected once the loop has been quiet", function()
  local base = live()
  garbage_to(base + 48) -- below any growth trigger
  local left = kb()
  ok(left > base + 32, "garbage left (" .. left .. " KiB, live " .. base .. ")")
  core.task.sleep(1.5)
  local after = kb()
  ok(after < base + 16, "collected after a quiet moment: " .. after .. " KiB, live "
     .. base .. ", " .. left .. " before")
end)

test("with no idle moment the heap stays bounded (thousands of tasks)", function()
  -- Start an idle cycle first, so the credit it leaves is spent under load.
  local base = live()
  garbage_to(base * 1.85)
  core.task.sleep(0)
  local peak = 0
  for _ = 1, 3000 do
    -- Each task is queued as the last one ends: the loop never idles.
    local t = core.task.spawn(garbage, 16)
    t:wait()
    local now = kb()
    if now > peak then peak = now end
  end
  ok(peak < 2.5 * base + 1024, "peak " .. peak .. " KiB, live " .. base
     .. " KiB, 3000 x 16 KiB allocated")
end)

test("a collector the program stopped stays stopped while idle", function()
  local base = live()
  collectgarbage("stop")
  garbage_to(base * 1.85)
  local burst = kb()
  core.task.sleep(0.3)
  local after = kb()
  collectgarbage("restart")
  ok(after >= burst - 16, "nothing collected while stopped: " .. after .. " KiB, "
     .. burst .. " after the burst")
end)

test("a collector the program put in generational mode keeps it", function()
  live()
  collectgarbage("generational")
  garbage(256)
  core.task.sleep(0.3) -- idle turns, and a quiet moment's would-be cycle
  garbage(256)
  core.task.sleep(0.6)
  local mode = collectgarbage("incremental") -- gives the mode it replaces
  ok(mode == "generational", "the mode after idle turns: " .. tostring(mode))
end)

return tap.done()
