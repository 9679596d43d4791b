--- One dispatch of an agent with permissions.relay over the CLI's control
--- channel (ad.domain.channel), for the runner: the task is the first user
--- message, the child's can_use_tool requests go to req.on_control_request
--- (ad.domain.relay), its input is closed at the turn's result, and the
--- run table is what ad.domain.claude.interpret reads of a one-shot child
--- (payload, info, lines, truncated), with the same progress, limits,
--- timeout and group teardown.
local core = require "ad.core"
local errors = require "ad.infra.errors"
local channel = require "ad.domain.channel"

local M = {}

--- Seconds a cancelled child gets to stop after the interrupt.
M.INTERRUPT_GRACE = channel.INTERRUPT_GRACE

local function stopped(ch)
  ch:stop(M.INTERRUPT_GRACE)
  ch:release()
  error(errors.new("cancelled", "cancelled"), 0)
end

--- o: grace, drain (seconds), cap (bytes kept of a non-stream run's stray
--- stdout).
function M.run(argv, text, env, timeout, req, cwd, o)
  local slot = core.limiter.acquire()
  if not slot then error(errors.new("cancelled", "cancelled while queued"), 0) end
  if req.on_slot and req.on_slot() == false then
    slot:release()
    error(errors.new("cancelled", "cancelled before it started"), 0)
  end
  local stream, on_progress = req.stream, req.on_progress
  local ch, msg, code = channel.open{ argv = argv, cwd = cwd, env = env, timeout = timeout,
    grace = o.grace, drain = o.drain, slot = slot, first = text,
    gated = req.on_spawn ~= nil, max_line = (not stream) and o.cap or nil }
  if not ch then
    slot:release()
    return { spawn_error = { msg, code } }
  end
  if req.on_spawn and req.on_spawn(ch.pid) == false then
    ch:kill(true)
  else
    ch:start()
    if req.on_started then req.on_started() end
  end
  local out = { lines = {} }
  local plugins = package.loaded["ad.domain.plugins"]
  local filter = on_progress and plugins and plugins.progress_filter()
  local handlers = {
    on_event = on_progress and function(kind, _, progress)
      if kind == "assistant" then
        for _, t in ipairs(progress) do on_progress(filter and filter(t) or t) end
      end
    end or nil,
    on_control_request = req.on_control_request,
  }
  local cancelled = false
  while true do
    local kind, obj = ch:read_event(handlers)
    if kind == nil then
      cancelled = (obj == "cancelled")
      break
    end
    if kind == "result" then
      out.payload = obj
      ch:close()
    end
  end
  if cancelled or core.task.cancelled() then stopped(ch) end
  local info = ch:wait()
  if not info then stopped(ch) end
  -- A non-stream request reads its result object from stdout lines.
  if not stream and out.payload then out.lines = { require("ad.infra.json").encode(out.payload) } end
  out.info = info
  ch:release()
  return out
end

return M
