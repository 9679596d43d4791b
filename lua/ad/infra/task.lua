--- Groups of tasks: run functions as tasks and wait for them all, with a
--- cancellation of the waiter reaching every member of the group. The
--- primitives (spawn, sleep, events, clocks) are core.task's.
local core = require "ad.core"
local errors = require "ad.infra.errors"

local M = {}

local function cancelled_error()
  return errors.new("cancelled", "cancelled")
end

--- Runs every function as its own task and returns their results in
--- input order: a list of {ok, value}. If the calling task is cancelled
--- while waiting, every child is cancelled and waited for (so their
--- children are gone) before the cancellation propagates.
function M.all(fns, ...)
  local tasks = {}
  for i, fn in ipairs(fns) do tasks[i] = core.task.spawn(fn, ...) end
  local out = {}
  for i, t in ipairs(tasks) do
    local ok, v = t:wait()
    if ok == nil then
      for _, other in ipairs(tasks) do other:cancel() end
      for _, other in ipairs(tasks) do
        while not other:done() do
          if other:wait() == nil then break end
        end
      end
      error(cancelled_error(), 0)
    end
    out[i] = { ok = ok, value = v }
  end
  return out
end

return M
