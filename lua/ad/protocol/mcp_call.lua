--- One tools/call in flight (ad.protocol.mcp's Server:call_tool): its
--- in-flight entry, the functions of its context, its task, and the lines
--- written for it most often (its log notifications, a text reply), each
--- written around its encoded parts. Loaded at the first tools/call, not
--- at start: the handshake does not wait for it.
local core = require "ad.core"
local json = require "ad.infra.json"
local util = require "ad.infra.util"
local mcp = require "ad.protocol.mcp"
local after_reply = require "ad.domain.after_reply"
local tools = util.lazy "ad.tools"
local type, setmetatable, tostring, pcall = type, setmetatable, tostring, pcall

local M = {}

-- The UTC second a log line on stderr starts with, formatted once per
-- second (every dispatch logs a line).
local stamp_at, stamp
local function log_stamp()
  local t = os.time()
  if t ~= stamp_at then stamp_at, stamp = t, os.date("!%Y-%m-%dT%H:%M:%SZ", t) end
  return stamp
end

local TAGS = {} -- "info" -> "INFO" (a log line's level on stderr)
for name in pairs(mcp.LEVELS) do TAGS[name] = name:upper() end

local META_SERVER = "io.modelcontextprotocol/serverInfo"
local META_MT = { __order = { META_SERVER } }

--- The reply line of a tool call whose result is one text: the bytes
--- json.encode makes of Server:result(id, text_result(text, is_error),
--- modern), written around the encoded id, text and _meta (the reply of
--- every dispatch).
--- text_json: the text already encoded as a JSON string (json.encode_text
--- of the result), in place of text.
function M.text_reply(id, text, is_error, modern, text_json)
  local rest = is_error == nil and "}]" or is_error and '}],"isError":true'
    or '}],"isError":false'
  if modern then
    rest = rest .. ',"resultType":"complete","_meta":' ..
      json.encode(setmetatable({ [META_SERVER] = mcp.server_info() }, META_MT))
  end
  return '{"jsonrpc":"2.0","id":' .. json.encode(id) ..
    ',"result":{"content":[{"type":"text","text":' .. (text_json or json.encode(text)) ..
    rest .. "}}\n"
end

-- One tools/call in flight: its in-flight entry (cancelled, done,
-- answered, task, beat) and what the functions of its context need.
local Call = {}
Call.__index = Call

function Call:progress(message, done_n, total)
  if not self.token or self.done or self.cancelled then return end
  -- A step: the next whole number (or n of total, never back). MCP wants
  -- every progress value above the last one.
  self.count = math.max(self.count + 1, done_n or 0)
  self.between = 0
  if total then self.total = total end
  self:notify(self.count, total, message)
end

-- A heartbeat of a long call: between two steps it counts a fraction
-- (1/2, 2/3, 3/4, ... of the way to the next whole number), so that it
-- never repeats, passes or goes back from what the steps say, and it
-- names the total only while its value is below it (the aggregation after
-- the last item of a fan-out).
function Call:heartbeat(message)
  if not self.token or self.done or self.cancelled then return end
  self.between = self.between + 1
  local value = self.count + self.between / (self.between + 1)
  local total = self.total
  self:notify(value, total and value < total and total or nil, message)
end

-- Whether a notification may go out now: a client that does not read
-- what it is sent would otherwise hold every progress and log line of
-- every running call in memory (replies are never dropped; these are
-- superseded by the next one anyway). Said once while it lasts.
local dropping = false -- (said once per stretch of an unread output)

function Call:may_notify()
  if core.chan.stdout_backlog() <= M.NOTE_BACKLOG then
    dropping = false
    return true
  end
  if not dropping then
    dropping = true
    io.stderr:write(log_stamp(), " WARNING the client is not reading its output (over ",
      M.NOTE_BACKLOG >> 20, " MiB waiting): progress and log notifications are dropped ",
      "until it does\n")
  end
  return false
end

function Call:notify(value, total, message)
  if not self:may_notify() then return end
  local p = json.object({ progressToken = self.token, progress = value,
                          total = total }, { "progressToken", "progress", "total", "message" })
  if self.era.version ~= "2024-11-05" and message then
    p.message = util.cut((message:gsub("%s+", " ")), 200)
  end
  self.server:send(json.object({ jsonrpc = "2.0", method = "notifications/progress", params = p },
                               { "jsonrpc", "method", "params" }))
end

-- Progress with a known total (parallel items, dialogue rounds).
function Call:progress_n(n, total, msg)
  self:progress(msg, n, total)
end

-- The notifications/message line of a log line whose level is one of
-- LEVELS: the text json.encode makes of that object ({jsonrpc, method,
-- params = {level, logger, data}}, in that order), written around the
-- encoded message, not by encoding the two objects (every dispatch logs).
local note_name, note_logger
function M.log_note(lvl, msg)
  if note_name ~= mcp.NAME then note_name, note_logger = mcp.NAME, json.encode(mcp.NAME) end
  return '{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"' .. lvl ..
    '","logger":' .. note_logger .. ',"data":' .. json.encode(msg) .. '}}\n'
end

function Call:log(lvl, msg)
  -- (one string: the stderr stream writes a whole line as it is)
  io.stderr:write(log_stamp() .. " " .. (TAGS[lvl] or lvl:upper()) .. " " .. msg .. "\n")
  local level, LEVELS = self.level, mcp.LEVELS
  if level and LEVELS[lvl] and LEVELS[lvl] >= LEVELS[level] and not self.done
      and not self.cancelled and self:may_notify() then
    self.server:send_line(M.log_note(lvl, msg))
  end
end

function Call:send_value(value)
  local server, era = self.server, self.era
  local ir = self.mrtr and require("ad.protocol.mcp_mrtr").render(value, self.mrtr)
  if ir then return server:result(self.id, ir, era.modern) end
  local is_error = tools.is_error_result(value)
  if type(value) == "string" then
    server:send_line(M.text_reply(self.id, core.text.fix(value), is_error, era.modern))
  else
    local ok, text = pcall(json.encode_text, value)
    if not ok then
      -- (a value of a user's tool or hook: the call still gets its answer)
      return server:send_line(M.text_reply(self.id, core.text.fix("The result could not be " ..
        "sent: it is not JSON (" .. tostring(text) .. "). A tool or hook returned a table " ..
        "that contains itself, or nests deeper than JSON output allows."), true, era.modern))
    end
    server:send_line(M.text_reply(self.id, nil, is_error, era.modern, text))
  end
end

-- Answers the call now while its handler goes on (a dispatch handed off
-- to a job at its deadline): what the handler returns later is not sent,
-- and a notifications/cancelled for the id no longer reaches it. False
-- when the call has ended or was cancelled.
function Call:answer(value)
  if self.done or self.cancelled then return false end
  self.done, self.answered = true, true
  if self.beat then self.beat:cancel() end
  local inflight = self.server.inflight
  if inflight[self.key] == self then inflight[self.key] = nil end
  self:send_value(value)
  if self.co then after_reply.flush(self.co) end
  return true
end

-- The task of a call: validation, the tool, its answer.
local function run_call(call, def, args, ctx)
  mcp.set_call_budget()
  local beat
  if call.token then
    beat = core.task.spawn(function()
      local started = core.task.now()
      while true do
        if core.task.sleep(mcp.HEARTBEAT) == nil then return end
        call:heartbeat(call.name .. " still running (" ..
          math.floor(core.task.now() - started) .. "s)")
      end
    end)
    call.beat = beat
  end
  local vargs, verr = tools.validate(def, args or {})
  local ok, value
  if not vargs then
    ok, value = true, tools.envelope(verr)
  else
    ok, value = pcall(call.era.continue or tools.call, def, vargs, ctx)
  end
  call.done = true
  if beat then beat:cancel() end
  local server = call.server
  if server.inflight[call.key] == call then server.inflight[call.key] = nil end
  if call.cancelled or call.answered then return end
  if not ok then
    if type(value) == "table" and value.type == "cancelled" then return end
    return server:error(call.id, -32603, "Internal error: " .. tostring(value))
  end
  call:send_value(value)
end

-- run_call with what the reply does not wait for (a span's end, a cache
-- entry) run right after the reply is written (ad.domain.after_reply).
local function run_call_then_deferred(call, def, args, ctx)
  call.co = after_reply.open()
  local ok, err = pcall(run_call, call, def, args, ctx)
  after_reply.flush()
  if not ok then error(err, 0) end
end

local NO_META = {} -- (read only)

--- Bytes of output waiting for the client past which notifications are
--- dropped: where the stdin gate stops taking requests (src/bind/chan.c).
M.NOTE_BACKLOG = 4 << 20

--- Starts the call (checked by Server:call_tool: name, def, args; key not
--- in flight) on a task of its own. era: {modern, version, meta, elicits,
--- continue}.
function M.start(server, id, key, name, def, args, era)
  local meta = era.meta or NO_META
  local token = meta.progressToken
  if type(token) == "number" then
    token = math.tointeger(token) or token
    token = mcp.token_text(token, server.line_now)
  elseif type(token) ~= "string" then
    token = nil
  end
  local level = server.log_level
  if era.modern then level = meta[mcp.META_LEVEL] end -- per request, or none
  -- The call is its own in-flight entry. A 2026-07-28 call whose request
  -- declared elicitation gets its permission requests as an
  -- InputRequiredResult (mrtr, ad.protocol.mcp_mrtr).
  local call = setmetatable({ cancelled = false, done = false, server = server, id = id,
    key = key, name = name, era = era, token = token, level = level, count = 0, between = 0, total = nil,
    mrtr = era.elicits and { tool = name, args = args or json.object({}, {}) } or nil,
    task = nil, beat = nil, answered = nil, co = false }, Call) -- (named: made at its final size)
  server.inflight[key] = call
  -- (each function of the context holds the call only)
  local ctx = {
    tool = name,
    elicit = M.elicitor(server, era),
    log = function(lvl, msg) call:log(lvl, msg) end,
    progress = function(msg) call:progress(msg) end,
    answer = function(value) return call:answer(value) end,
    progress_n = function(n, total, msg) call:progress_n(n, total, msg) end,
  }
  call.task = core.task.spawn(run_call_then_deferred, call, def, args, ctx)
  return call
end

-- ------------------------------------- requests to the client (legacy) --

--- Sends a request to the client and waits at most timeout seconds for
--- its response (the serve loop keeps reading meanwhile and routes it
--- here by id: Server.outgoing). Returns the result table, or nil and "timeout", "error"
--- (with the error object), "closed" or "cancelled" (the caller's task
--- was cancelled: it decides what that means).
local function client_request(server, method, params, timeout)
  if server.broken then return nil, "closed" end
  server.outgoing = server.outgoing or {}
  server.next_out = (server.next_out or 0) + 1
  local id = "agent-dispatch-" .. server.next_out
  local ev = core.task.event()
  server.outgoing[id] = ev
  server:send(json.object({ jsonrpc = "2.0", id = id, method = method, params = params },
                        { "jsonrpc", "id", "method", "params" }))
  local msg, why = ev:wait(timeout)
  server.outgoing[id] = nil
  if not msg then
    -- Withdrawn: the client may stop asking its user (a dialog for a
    -- call that was cancelled, or decided elsewhere, would linger).
    server:send(json.object({ jsonrpc = "2.0", method = "notifications/cancelled",
      params = json.object({ requestId = id, reason = why == "timeout" and
        "No answer in time; the request was decided without it." or
        "The request is no longer needed (its call was cancelled or decided elsewhere)." },
        { "requestId", "reason" }) }, { "jsonrpc", "method", "params" }))
    return nil, why or "timeout"
  end
  if msg.error ~= nil then return nil, "error", msg.error end
  if type(msg.result) ~= "table" then return nil, "error", msg.result end
  return msg.result
end

--- The elicit(params, timeout) of a tool call's context, when its client
--- takes form elicitation (ad.domain.relay): elicitation/create with
--- mode "form" where the version has it.
function M.elicitor(server, era)
  if era.modern or not server.client_elicits then return nil end
  return function(params, timeout)
    if era.version == "2025-11-25" then params.mode = "form" end
    local res, why, err = client_request(server, "elicitation/create", params, timeout)
    if not res and why == "error" then
      why = "the client answered with an error: " .. (type(err) == "table" and
        tostring(err.message) or json.encode(err))
    end
    return res, why
  end
end

return M
