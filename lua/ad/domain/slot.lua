--- The two steps every child run takes around its spawn, over either
--- transport (ad.domain.runner for one-shot, ad.domain.live_run for the
--- live channel, ad.domain.live for a kept process): a concurrency slot
--- before it, and the start gate after (live keeps its own: a kept process
--- has started already).
local core = require "ad.core"
local errors = require "ad.infra.errors"
local trace = require "ad.domain.trace"

local M = {}

--- A concurrency slot for req, or the cancelled error: cancelled while
--- queued, or refused by req.on_slot (the slot goes back at once). A
--- request that must wait for one calls req.on_queued(req) first (what
--- the call says of the dispatch is said before the wait, which a hand-off
--- to a job may answer).
function M.take(req)
  -- A task cancelled while it waited for something else (a cancel that
  -- came right behind its call, during the transport probe): the wait it
  -- was in took the cancel, and a free slot is taken without a wait. It
  -- must not start a child.
  if core.task.cancelled() then error(errors.new("cancelled", "cancelled before it started"), 0) end
  local slot = core.limiter.acquire(true)
  if not slot then
    if req.on_queued then req.on_queued(req) end
    slot = core.limiter.acquire()
  end
  if not slot then error(errors.new("cancelled", "cancelled while queued"), 0) end
  if req.on_slot and req.on_slot() == false then
    slot:release()
    error(errors.new("cancelled", "cancelled before it started"), 0)
  end
  return slot
end

--- Lets the spawned child h (pid) run. With on_spawn the child waits at
--- its start gate until on_spawn has returned: whatever it records names
--- the child before it runs; on_spawn returning false kills it unstarted.
function M.start(req, h, pid, argv)
  -- mark: the child's trace context, the entry of its environment that is
  -- its own (what ad.storage.jobs finds the rest of its group by)
  local mark = req.trace_env and trace.env_entry(req.trace_env)
  if req.on_spawn and req.on_spawn(pid, argv, mark) == false then
    h:kill(true) -- refused: it never starts
    return
  end
  h:start()
  -- on_pid: the child's pid, without holding it at the start gate.
  if req.on_pid then req.on_pid(pid, argv, nil, nil, mark) end
  if req.on_started then req.on_started() end
end

return M
