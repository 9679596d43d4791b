-- ad.domain.after_reply: deferred calls run after the reply in the order
-- they came, then the finally calls (the last one on the task itself when
-- its own list is flushed, the others on tasks of their own), whatever
-- order the two kinds came in; pending runs what came so far; without an
-- open list a call runs at once (defer) or on a task of its own (finally).
-- Run: agent-dispatch run tests/lua/after_reply_test.lua
local here = arg[0]:match("(.*/)") or "./"
local tap = dofile(here .. "tap.lua")
local test, eq, ok = tap.test, tap.eq, tap.ok
local core = require "ad.core"
local after_reply = require "ad.domain.after_reply"

local function recorder()
  local log = {}
  local function rec(tag, a, b, c, d)
    log[#log + 1] = table.concat({ tag, tostring(a), tostring(b), tostring(c), tostring(d) }, ":")
  end
  return log, rec
end

test("defers in order, then finally calls; the last finally on the task", function()
  local log, rec = recorder()
  local me
  local t = core.task.spawn(function()
    me = coroutine.running()
    after_reply.open()
    after_reply.defer(rec, "d1", 1, nil, 3)
    after_reply.finally(function(a, b, c) rec("f1", a, b, c, coroutine.running() == me) end, "x")
    after_reply.defer(rec, "d2", "a", "b")
    after_reply.finally(function(a, b, c) rec("f2", a, b, c, coroutine.running() == me) end, 1, 2, 3)
    eq(#log, 0, "nothing before the flush")
    after_reply.flush()
    log[#log + 1] = "flushed"
  end)
  assert(t:wait())
  core.task.sleep(0.05) -- (the first finally runs on a task of its own)
  eq(table.concat(log, " "), "d1:1:nil:3:nil d2:a:b:nil:nil f2:1:2:3:true flushed " ..
    "f1:x:nil:nil:false")
end)

test("pending: what came so far runs, finally calls on tasks of their own; the list stays open", function()
  local log, rec = recorder()
  local t = core.task.spawn(function()
    after_reply.open()
    after_reply.defer(rec, "d1")
    after_reply.finally(rec, "f1")
    after_reply.pending()
    log[#log + 1] = "pending done"
    after_reply.defer(rec, "d2")
    eq(log[#log], "pending done", "deferred again: the list is open")
    after_reply.flush()
  end)
  assert(t:wait())
  core.task.sleep(0.05)
  eq(table.concat(log, " "), "d1:nil:nil:nil:nil pending done d2:nil:nil:nil:nil " ..
    "f1:nil:nil:nil:nil")
end)

test("no open list: defer runs at once, finally on a task of its own", function()
  local log, rec = recorder()
  local t = core.task.spawn(function()
    after_reply.defer(rec, "now")
    after_reply.finally(rec, "later")
    log[#log + 1] = "returned"
  end)
  assert(t:wait())
  core.task.sleep(0.05)
  eq(table.concat(log, " "), "now:nil:nil:nil:nil returned later:nil:nil:nil:nil")
end)

test("a failing deferred call is reported, the others still run", function()
  local log, rec = recorder()
  local t = core.task.spawn(function()
    after_reply.open()
    after_reply.defer(function() error("boom") end)
    after_reply.defer(rec, "after")
    after_reply.flush()
  end)
  assert(t:wait())
  ok(log[1] == "after:nil:nil:nil:nil", table.concat(log, " "))
end)

return tap.done()
