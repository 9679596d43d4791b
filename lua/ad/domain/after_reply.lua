--- Work a client's answer does not wait for: the end record of a
--- dispatch's span, its entry in the result cache. The task that will
--- write an MCP reply opens a list (open); work deferred on that task
--- (defer) runs right after the reply is written (flush), before the
--- server reads or handles another request, so a dispatch_trace or a
--- cache hit that follows finds it. Anywhere else (a CLI command, a
--- script, a job's worker, a parallel item's task) the work runs at once.
--- A second dispatch on the same task runs what the first deferred before
--- it starts (pending), so nothing waits on a long call. Work that waits
--- (the end of a child that answered: finally) runs last, on the task
--- itself once its reply is out and the rest is done, else on a task of
--- its own.
local core = require "ad.core"

local M = {}

local running = coroutine.running

-- task (its coroutine) -> true (open, nothing deferred) | the list: each
-- deferred call as five entries (fn and four arguments), in the order they
-- came; a finally call's fifth entry is END (it takes three arguments),
-- and ends counts them (one table per task, not one more for them).
local lists = setmetatable({}, { __mode = "k" })
local END = {}

-- (made at the size of two calls and their counts: not grown)
local function new_list()
  return { nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, n = 0, ends = 0 }
end

--- Opens the current task's list; returns the task's coroutine (what
--- flush takes from another task).
function M.open()
  local co = running()
  lists[co] = true
  return co
end

--- fn(a, b, c, d) after the reply of the current task, or now when it
--- has no list open.
function M.defer(fn, a, b, c, d)
  local co = running()
  local list = lists[co]
  if not list then return fn(a, b, c, d) end
  if list == true then
    list = new_list()
    lists[co] = list
  end
  local n = list.n
  list[n + 1], list[n + 2], list[n + 3], list[n + 4], list[n + 5] = fn, a, b, c, d
  list.n = n + 5 -- (a nil argument leaves a hole: # would not do)
end

--- fn(a, b, c, d) now (defer's other half, for callers that choose).
function M.now(fn, a, b, c, d) return fn(a, b, c, d) end

--- fn(a, b, c) after the current task's reply and the work deferred
--- before it, on that task (it may wait: nothing of the reply's is left
--- then); on a task of its own when the current task has no list open.
function M.finally(fn, a, b, c)
  local co = running()
  local list = lists[co]
  if not list then return core.task.spawn(fn, a, b, c) end
  if list == true then
    list = new_list()
    lists[co] = list
  end
  local n = list.n
  list[n + 1], list[n + 2], list[n + 3], list[n + 4], list[n + 5] = fn, a, b, c, END
  list.n, list.ends = n + 5, list.ends + 1
end

local function report(ok, err)
  if not ok then
    io.stderr:write("agent-dispatch: warning: work after a reply failed (",
      tostring(type(err) == "table" and err.message or err), ")\n")
  end
end

-- Runs the calls of list; a failing one is reported, never raised (the
-- answer is out already). Its finally calls then: the last one here when
-- inline (the list's own task, at its end), the others on tasks of their
-- own.
local function run(list, inline)
  local n, ends = list.n, list.ends
  for i = 1, n, 5 do
    if list[i + 4] ~= END then
      report(pcall(list[i], list[i + 1], list[i + 2], list[i + 3], list[i + 4]))
    end
  end
  if ends == 0 then return end
  for i = 1, n, 5 do
    if list[i + 4] == END then
      ends = ends - 1
      if inline and ends == 0 then
        report(pcall(list[i], list[i + 1], list[i + 2], list[i + 3]))
      else
        core.task.spawn(list[i], list[i + 1], list[i + 2], list[i + 3])
      end
    end
  end
end

--- Runs what the current task deferred so far; its list stays open.
function M.pending()
  local co = running()
  local list = lists[co]
  if list and list ~= true then
    lists[co] = true
    run(list, false)
  end
end

--- Runs and closes the list of task co (default: the current task's):
--- after its reply is written, or when it ends without one. On the
--- list's own task the last finally call runs here (and may wait).
function M.flush(co)
  local own = running()
  co = co or own
  local list = lists[co]
  lists[co] = nil
  if list and list ~= true then run(list, co == own) end
end

return M
