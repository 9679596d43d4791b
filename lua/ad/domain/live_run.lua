--- One dispatch over the live transport (ad.domain.channel), for the
--- runner (ad.domain.runner): the task is the first user message, the
--- result is the turn's result line, and what the caller sees is what a
--- one-shot child gives: the same run table for ad.domain.claude.interpret
--- (payload, info, lines and truncated for a non-stream request), the same
--- progress, limits, timeout and group teardown.
---
--- The task is written to the child's stdin once it is spawned (not on
--- the way to the spawn). While the child works, its job's owner may
--- steer it (req.on_channel hears of the channel: ch:send_user). At the
--- first result the child's input is closed (for an answer returned at
--- once, right after the reply): a steering message that arrived during the turn is
--- answered in one more turn (the CLI runs queued messages before it
--- ends), and the last result is the answer. A successful result with
--- nothing queued after it is the answer at once: the child's end (its
--- input closed, read to its end, its exit, the process object:
--- ch:finish) goes on after the reply (ad.domain.after_reply.finally: on the call's task, else on
--- a task of its own); the concurrency slot stays held until the child
--- is gone, and a child still there M.END_BOUND seconds after its answer
--- has its group killed. M.wait_ends waits for them, and a resume of the
--- session waits for its child (M.wait_session). A failed result waits
--- for the exit (its code and stderr), and so do a relayed child, a
--- remote agent's ssh and a child handed off to a job (their ends have
--- rules of their own: ad.domain.relay, ad.domain.remote,
--- ad.domain.keeper).
---
--- Cancelling the task asks the child to stop (interrupt), gives it
--- settings.interrupt_grace_seconds, then kills the group; the cancelled error carries the child's
--- session_id (the session stays resumable with dispatch_session).
local core = require "ad.core"
local errors = require "ad.infra.errors"
local channel = require "ad.domain.channel"
local claude = require "ad.domain.claude"
local after_reply = require "ad.domain.after_reply"
local slot_gate = require "ad.domain.slot"

local M = {}

--- How long (seconds) a child answered at its result may go on before its
--- group is killed (then the kill grace).
M.END_BOUND = 2

-- Ends of children answered at their result not yet run to completion
-- (counted when scheduled: a waiter must not see 0 while an end is
-- queued but has not started), and the event M.wait_ends waits on (made
-- when someone waits). Per session id, the channel of that session's
-- ending child, and the event a resume waits on (made when one waits).
local ending, all_ended = 0, nil
local ending_session, session_gone = {}, {}

-- The end of a child answered at its result: its input closed (it ends
-- after the turn), then ch:finish.
local function close_and_finish(ch, bound)
  ch:close()
  return ch:finish(bound)
end

local function finish(ch, bound, sid)
  local ok, err = pcall(close_and_finish, ch, bound)
  ending = ending - 1
  if ending == 0 and all_ended then
    all_ended:set(true)
    all_ended = nil
  end
  if sid and ending_session[sid] == ch then
    ending_session[sid] = nil
    local gone = session_gone[sid]
    if gone then
      session_gone[sid] = nil
      gone:set(true)
    end
  end
  if not ok then error(err, 0) end
end

--- Waits until the end of every child answered at its result has run
--- (each is bounded: see the top; so is this wait), or a stop signal
--- comes. A command, script or job runner calls it before it exits; a
--- server's are ended with it.
function M.wait_ends()
  if ending == 0 then return end
  local done = core.task.event()
  all_ended = done
  -- A stop signal (Ctrl-C) ends the wait: the exit kills what is left.
  local watcher = core.task.spawn(function()
    if core.signal.wait() then done:set(true) end
  end)
  done:wait(M.END_BOUND + 5) -- (the bound, the kill grace, the reaping)
  watcher:cancel()
  all_ended = nil
end

--- Waits (bounded) until the child of session sid answered at its result
--- has ended, if one is still ending: a resume of that session must not
--- run a second CLI on its transcript beside it.
function M.wait_session(sid)
  if not ending_session[sid] then return end
  local gone = session_gone[sid] or core.task.event()
  session_gone[sid] = gone
  gone:wait(M.END_BOUND + 5) -- (the bound, the kill grace, the reaping)
end

-- The cancelled error, after the child is gone.
local function stopped(ch, grace)
  local sid = ch.session_id
  ch:stop(grace)
  ch:release()
  local e = errors.new("cancelled", "cancelled")
  e.session_id = sid
  error(e, 0)
end

--- o: grace, drain (seconds), cap (bytes kept of a non-stream run's stray
--- stdout), interrupt_grace (seconds), session_id (the child's, when known),
--- env_add (one more variable after env: core.proc.spawn).
function M.run(argv, text, env, timeout, req, cwd, o)
  local slot = slot_gate.take(req)
  local stream = req.stream
  local cap = o.cap
  local ch, msg, code = channel.open{ argv = argv, cwd = cwd, env = env, env_add = o.env_add,
    timeout = timeout,
    grace = o.grace, drain = o.drain, slot = slot, session_id = o.session_id,
    -- (a line over the cap is dropped in every mode: a result larger than
    -- that is refused alike by each path, ad.domain.claude.interpret)
    gated = req.on_spawn ~= nil, max_line = cap, keeper = req.keeper,
    -- Stray stdout past the cap is dropped in C (it would be dropped
    -- below anyway): megabytes of it never become Lua strings.
    max_plain = (not stream) and cap or nil }
  if not ch then
    slot:release()
    return { spawn_error = { msg, code } }
  end
  -- The task, the first user message: written once the child is spawned
  -- (its input is a pipe, read when the CLI is ready), not on the way to
  -- the spawn. (A child refused at its start gate never reads it.) Input
  -- that could not be queued ends the child's input: it fails at once,
  -- instead of waiting for a task until its timeout.
  if not ch:send_user(text) then ch:close() end
  slot_gate.start(req, ch, ch.pid, argv)
  -- (sized for what the runner adds: no rehash on the way back)
  local out = { lines = {}, live = true, payload = nil, info = nil, truncated = nil,
    session_id = nil, fresh = nil, timeout = nil, budget = nil, max_output = nil }
  local handlers = channel.handlers(req, cap, out)
  if req.on_channel then req.on_channel(ch) end
  local early = not (req.relay or req.on_control_request or req.agent.host)
  local cancelled = false
  while true do
    local kind, why = ch:read_event(handlers)
    if kind == nil then
      cancelled = (why == "cancelled")
      break
    end
    if kind == "result" then
      out.payload = why
      -- Every message sent has its result, and this one is a success:
      -- the answer, now; the child's end goes on after the reply, its
      -- input closed there (nothing else writes to it: the channel is
      -- no longer the run's).
      if early and ch.sent == ch.turns and not claude.failed(why) and not ch:kept() then
        if req.on_channel then req.on_channel(nil) end
        -- (once the reply is out, on the call's task: ad.domain.after_reply)
        local sid = o.session_id or ch.session_id
        if sid then ending_session[sid] = ch end
        ending = ending + 1
        after_reply.finally(finish, ch, M.END_BOUND, sid)
        out.info = channel.ANSWERED
        return out
      end
      ch:close()
    end
  end
  if req.on_channel then req.on_channel(nil) end
  if cancelled or core.task.cancelled() then stopped(ch, o.interrupt_grace) end
  local info = ch:wait()
  if not info then stopped(ch, o.interrupt_grace) end
  if info.skipped_lines > 0 and not out.payload then out.truncated = true end
  if not stream and info.truncated then out.truncated = true end
  out.info = info
  ch:release()
  return out
end

return M
