--- The sync-to-async hand-off of one dispatch (handoff_after_seconds), at
--- no cost until its deadline: the call runs its dispatch on its own task
--- with one timer armed (core.task.after). Only when the deadline passes
--- while the child still runs (rare) does the run become a job
--- (ad.domain.async.adopt) and the call get its answer at once, through
--- the caller's answer(value); the same task then goes on as the job's
--- worker and records the result. Nothing else is built up front: no
--- task, no job fields, no copy of the request.
local core = require "ad.core"
local async = require "ad.domain.async"
local runner = require "ad.domain.runner"
local result = require "ad.domain.result"
local keeper = require "ad.domain.keeper"

local M = {}

--- What a handed-off call's dispatch returns once the job has its result
--- (the call itself was answered through answer()).
M.ANSWERED = setmetatable({}, { __name = "handoff.ANSWERED" })

--- Runs req (a request from ad.domain.request, built for this call: its
--- observers are set on it) through runner.run. after: the deadline in
--- seconds; answer(value) -> bool answers the call now (false: it cannot
--- be any more); reply(rec, run) -> the hand-off answer; log(level, msg)
--- (optional). Returns runner.run's values, or M.ANSWERED when the call
--- was handed off. Raises what runner.run raised (a cancellation) when
--- it was not.
function M.run(req, after, answer, reply, log)
  -- The run is the job-to-be (see ad.domain.async); its done event and
  -- progress tail are made only if it is adopted or sees a line.
  -- (The fields it gets later are named here, nil: the table is made at
  -- the size it ends with, not grown field by field.)
  local run = { task = core.task.current(), req = req, span = nil, channel = nil,
    transport = nil, pid = nil, argv = nil, age = nil, slot = nil, last_line = nil, mark = nil }
  req.on_slot = function() return async.slot_gate(run) end
  -- The child is held at its start gate (on_spawn) only once the run is
  -- being adopted: before that, nothing has to name it before it runs.
  -- (age, slot: a kept live process's seconds before this turn and the
  -- turn's concurrency slot, ad.domain.live; mark: ad.domain.slot's)
  req.on_pid = function(pid, argv, age, slot, mark)
    run.pid, run.argv, run.age, run.slot, run.mark = pid, argv, age, slot, mark
  end
  -- A call that may be handed off: its child is the keeper's, so the job
  -- can outlive this process (ad.domain.keeper).
  if keeper.wanted(req) then
    req.keeper = true
    -- The last line the server read: if it is the result when the server
    -- stops, the server records it (the keeper can no longer read it).
    req.on_output = keeper.output_observer(run)
  end
  req.on_span = function(span) run.span = span end
  -- The live child while it works: what a steer message to the job finds
  -- once the call is handed off (ad.domain.steer).
  req.on_channel = function(ch, mode)
    run.channel = ch
    if mode then run.transport = mode end
  end
  if req.stream then
    local inner = req.on_progress
    req.on_progress = function(line)
      run.tail = run.tail or {}
      async.note(run, line)
      if inner then inner(line) end
    end
  end
  -- The hand-off itself: at the deadline, or at once when a relayed
  -- child asks its caller for a permission (ad.domain.relay: the answer
  -- then says what the job waits for).
  local timer
  local function hand_off()
    if run.finished or run.id or run.handing then return end
    run.handing = true
    req.on_spawn = function(pid, argv, mark) return async.spawned(run, pid, argv, mark) end
    run.done, run.tail = core.task.event(), run.tail or {}
    local rec, why = async.adopt(run, { agent = req.agent_name, task = req.task,
      context = req.context, caller = req.caller, goal = req.goal })
    -- The dispatch's line comes before the call's answer, even when its
    -- child has not been spawned yet (queued for a slot).
    if rec and run.span then runner.announce(run.span) end
    if run.relay then
      local relay = require "ad.domain.relay"
      relay.adopted(run, rec)
      if rec and run.relay.asking then
        answer(relay.awaiting(rec, run, req.agent_name))
        return
      end
    end
    if not rec then
      if log then log("warning", "Could not hand the call off to a job (" .. tostring(why) ..
        "); waiting for it instead") end
      return
    end
    answer(reply(rec, run))
  end
  timer = core.task.after(after, hand_off)
  if req.relay then
    req.relay_run = run
    run.asking = { set = function()
      timer:stop()
      core.task.spawn(hand_off)
    end }
  end
  local ok, r, ran = pcall(runner.run, req)
  timer:stop()
  run.finished = true
  if run.adopting then run.adopting:wait() end
  if not run.id then
    if not ok then error(r, 0) end
    return r, ran
  end
  -- The job's result: a refusing before_dispatch hook is a failure.
  if ok then r = r or result.failure(req.agent_name, "permission", ran) end
  async.finish(run, ok, r)
  return M.ANSWERED
end

return M
