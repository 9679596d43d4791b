--- One claude child over the CLI's live control channel (`claude -p
--- --input-format stream-json --output-format stream-json --verbose`): user
--- messages go in as JSON lines on its stdin, stream-json events come out,
--- and between turns the process waits for the next message. Closing stdin
--- ends it after the current turn (and any queued message).
---
---   channel.argv(claude_argv, {relay = bool}) -> argv with the live flags
---       (after argv[1], the program; --permission-prompt-tool stdio with
---       relay), for a claude argv built with stream = true
---   channel.user_line(text) -> the JSON line of one user message
---   channel.open{argv=, env=, cwd=, timeout=, grace=, drain=, slot=,
---       gated=, max_line=, max_plain=, session_id=, keeper=}
---       -> ch | nil, message, code  (the table, the caller's for this
---       call only, becomes core.proc.spawn's options)
---       (max_plain: bytes of lines that are not JSON objects read; past
---       it the process object drops them, see core.proc.spawn)
---       (session_id: the session the child was started in, when known)
---       (the first user message is ch:send_user's, once it is spawned; the
---       process is spawned with soft_cancel: a cancelled wait returns
---       "cancelled" and the caller decides, see ch:stop)
---   ch:start()                      a gated child goes on to exec
---   ch:limit_plain(n)               max_plain from here on (nil: none)
---   ch:send_user(text) -> true | nil, message   (a user message)
---   ch:turn(handlers) -> result object | nil, "eof" | nil, "cancelled"
---       reads lines until the turn's result line; handlers.on_event(kind,
---       obj, progress) for every other event (progress: the progress lines
---       of an assistant event), handlers.on_line(line) for a line that is
---       not an event, handlers.on_control_request(msg, reply, line) for
---       each control_request of the child (line: as the child wrote it;
---       reply(response_table) answers it
---       with success); with no handler a can_use_tool is denied with a
---       clear message and any other request gets an error response
---   channel.handlers(req, cap, out) -> the handlers of one turn for req:
---       progress in stream mode (through the redact hooks), the stray
---       stdout of a non-stream request kept in out.lines up to cap bytes
---       (out.truncated past it), req's control-request handler, every
---       line to req.on_output
---   ch:read_event(handlers) -> kind, obj | nil, err   one line (same
---       handlers; control requests answered), for callers that keep
---       reading past a result; "" for a line that is no event (or one
---       over max_line, dropped: the child's input is then closed, since
---       that line may have been its result)
---   ch:interrupt() -> true | nil, message   (asks the turn to stop: the
---       CLI ends it with a result of subtype error_during_execution,
---       terminal_reason aborted_streaming; the session stays resumable)
---   ch:close()     closes stdin (the CLI ends after the turn)
---   ch:kill([hard]) the whole process group
---   ch:stop(grace) -> true when the child exited on its own: interrupt,
---       close, wait up to grace seconds for its exit, then kill the group
---   ch:wait() -> exit info (as core.proc) | nil (cancelled)
---   ch:finish(bound) -> exit info   the end of a child whose answer is
---       in (input closed): read to its end, its exit, the process object
---       released; a child still there bound seconds later, or a
---       cancelled wait (a shutdown), has its group killed
---   ch:kept() -> bool (handed off to a job: the keeper takes the child
---       over if this process exits, ad.domain.keeper)
---   ch:release()   the process object (kills a live child)
---   ch.pid, ch.session_id (from the child's events), ch:alive(),
---   ch:steerable() (stdin still open)
local core = require "ad.core"
local json = require "ad.infra.json"
local claude = require "ad.domain.claude"

local M = {}

--- How long a cancelled live child gets to stop after the interrupt before
--- its group is killed (settings.interrupt_grace overrides).
M.INTERRUPT_GRACE = 2

--- The message a child's model sees when it asked for a tool and nobody
--- here decides permissions.
M.NO_RELAY = "agent-dispatch does not relay permission requests for this " ..
  "agent; the tool was not allowed. Use the tools allowed to this agent."

function M.argv(argv, o)
  local out = { argv[1], "--input-format", "stream-json" }
  if o and o.relay then
    out[#out + 1] = "--permission-prompt-tool"
    out[#out + 1] = "stdio"
  end
  table.move(argv, 2, #argv, #out + 1, out)
  return out
end

--- The exit info of a turn answered at its result: what claude.interpret
--- reads of a successful run (read only: it never writes it).
M.ANSWERED = { exit_code = 0, signal = 0, timed_out = false, stderr = "",
  skipped_lines = 0, truncated = false, dropped_bytes = 0 }

function M.handlers(req, cap, out)
  local on_progress = req.on_progress
  local plugins = package.loaded["ad.domain.plugins"]
  local filter = on_progress and plugins and plugins.progress_filter()
  local bytes = 0
  return {
    -- Progress exists in stream mode only, as over the one-shot transport.
    on_event = (req.stream and on_progress) and function(kind, _, progress)
      if kind == "assistant" then
        for _, t in ipairs(progress) do on_progress(filter and filter(t) or t) end
      end
    end or nil,
    -- A non-stream request keeps what is not an event (the plain-text
    -- answer of a CLI without JSON), bounded like a one-shot run.
    on_line = (not req.stream) and function(line)
      if out.truncated then return end
      bytes = bytes + #line + 1
      if bytes > cap then out.truncated = true else out.lines[#out.lines + 1] = line end
    end or nil,
    on_control_request = req.on_control_request,
    -- Every line read (the keeper records a result the server read as it
    -- stopped: ad.domain.keeper).
    on_output = req.on_output,
  }
end

function M.user_line(text)
  return '{"type":"user","message":{"role":"user","content":' .. json.encode(text) .. '}}\n'
end

local Channel = {}
Channel.__index = Channel

-- (o, made for this call, is the spawn's options too: no second table)
function M.open(o)
  o.stdin_keep, o.soft_cancel, o.report_skipped, o.classify = true, true, true, true
  local p, msg, code = core.proc.spawn(o)
  if not p then return nil, msg, code end
  return setmetatable({ p = p, pid = p:pid(), turns = 0, sent = 0,
    session_id = o.session_id }, Channel)
end

function Channel:start() self.p:start() end

--- Bytes of lines that are not JSON objects read from here on (nil: no
--- bound), as open's max_plain: a kept child bounds each turn on its own.
function Channel:limit_plain(n) self.p:limit_plain(n or 0) end

function Channel:alive() return not self.exited end

function Channel:steerable() return not self.exited and self.p:stdin_open() end

function Channel:send_user(text)
  local ok, err = self.p:write(M.user_line(text))
  if ok then self.sent = self.sent + 1 end
  return ok, err
end

function Channel:interrupt()
  self.interrupted = true
  return self.p:write(json.encode({ type = "control_request",
    request_id = core.text.uuid4(), request = { subtype = "interrupt" } }) .. "\n")
end

function Channel:close() self.p:close_stdin() end

function Channel:kill(hard) self.p:kill(hard) end

function Channel:release()
  self.exited = true
  self.p:close()
end

local function respond(ch, id, response)
  return ch.p:write(json.encode({ type = "control_response", response = {
    subtype = "success", request_id = id, response = response } }) .. "\n")
end

local function control_request(ch, obj, handlers, line)
  local id = obj.request_id
  local req = type(obj.request) == "table" and obj.request or {}
  local function reply(response) return respond(ch, id, response) end
  -- A handler returns nil for a request it does not take (the default
  -- answer below goes out then).
  if handlers and handlers.on_control_request then
    local taken = handlers.on_control_request(obj, reply, line)
    if taken ~= nil then return taken end
  end
  if req.subtype == "can_use_tool" then
    return reply({ behavior = "deny", message = M.NO_RELAY })
  end
  return ch.p:write(json.encode({ type = "control_response", response = {
    subtype = "error", request_id = id,
    error = "agent-dispatch does not handle " .. tostring(req.subtype) } }) .. "\n")
end

--- One line of the child: kind, obj (an event), or "", nil for a line that
--- is not one (handed to handlers.on_line), or nil, "eof" | "cancelled".
function Channel:read_event(handlers)
  -- tag: the line's kind as the process object tells it (classify): the
  -- type its start names, "" when it names none, false for no JSON object.
  local line, tag = self.p:read_line()
  if line == nil then
    if tag == "skipped" then
      -- A line over max_line was dropped: it may have been the result,
      -- which the child would then wait after forever. Its input is closed
      -- so it ends after its turn, as a one-shot child would.
      self.skipped = (self.skipped or 0) + 1
      self:close()
      return "", nil
    end
    return nil, tag == "cancelled" and "cancelled" or "eof"
  end
  if handlers and handlers.on_output then handlers.on_output(line) end
  -- Decoded only when someone needs it: the result, the child's control
  -- requests, every event for an on_event handler, the first line naming
  -- the session when it is not known, an object whose type its start does
  -- not name. Another typed line needs no search of its text.
  if tag and tag ~= "" and tag ~= "result" and tag ~= "control_request" and
      not (handlers and handlers.on_event) and
      (self.session_id or not line:find('"session_id"', 1, true)) then
    return "", nil
  end
  local kind, obj, progress
  if tag ~= false then kind, obj, progress = claude.event(line) end
  if not kind then
    if handlers and handlers.on_line then handlers.on_line(line) end
    return "", nil
  end
  if type(obj.session_id) == "string" and obj.session_id ~= "" then
    self.session_id = obj.session_id
  end
  if kind == "control_request" then
    control_request(self, obj, handlers, line)
    -- A cancel that came while the request waited (a permission asked of
    -- the caller) woke that wait, not this read: the reader must still
    -- stop the child, not read on to the end of its turn.
    if core.task.cancelled() then return nil, "cancelled" end
  elseif kind == "result" then
    self.turns = self.turns + 1
  elseif handlers and handlers.on_event then
    handlers.on_event(kind, obj, progress)
  end
  return kind, obj
end

function Channel:turn(handlers)
  while true do
    local kind, obj = self:read_event(handlers)
    if kind == nil then return nil, obj end
    if kind == "result" then return obj end
  end
end

function Channel:kept() return self.p:kept() end

function Channel:finish(bound)
  local p = self.p
  p:deadline(bound) -- (the group killed then, as at a timeout)
  while true do
    local line, why = p:read_line()
    if line == nil and why == nil then break end -- the end of its output
    if why == "cancelled" then p:kill() end      -- ("skipped": read on)
  end
  local info = p:wait()
  while not info do
    p:kill()
    info = p:wait()
  end
  self:release()
  return info
end

function Channel:wait()
  local info = self.p:wait()
  if info then self.exited = true end
  return info
end

--- Stops a child the graceful way: the interrupt, then the end of its
--- input, then up to grace seconds for its exit (lines are drained and
--- dropped meanwhile), then the group is killed. Waits for the exit
--- either way; true when the child ended on its own.
function Channel:stop(grace)
  if self.exited then return true end
  self:interrupt()
  self:close()
  local done = false
  local timer = core.task.spawn(function()
    core.task.sleep(grace or M.INTERRUPT_GRACE)
    if not done then self.p:kill() end
  end)
  local by_itself = true
  while true do
    local kind, why = self:read_event(nil)
    if kind == nil and why == "eof" then break end
    if kind == nil then -- cancelled again: no more grace
      by_itself = false
      self.p:kill()
    end
  end
  local info = self.p:wait()
  while not info do
    self.p:kill()
    info = self.p:wait()
  end
  done = true
  timer:cancel()
  self.exited = true
  return by_itself and info.signal == 0, info
end

return M
