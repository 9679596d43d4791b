--- MCP tasks, 2025-11-25 experimental wire format (MCP.md 2.10), for
--- legacy sessions whose client declared the `tasks` capability. A task is
--- an async job: `tools/call` with params.task on `dispatch` or
--- `dispatch_async` creates a job, and tasks/get, tasks/result,
--- tasks/list and tasks/cancel read and cancel it. One implementation (the
--- job store and its workers), two front doors. Clients that declare no
--- tasks capability (Claude Code today) see no change at all.
local core = require "ad.core"
local json = require "ad.infra.json"
local util = require "ad.infra.util"
local config = require "ad.storage.config"
local jobs = require "ad.storage.jobs"
local async = require "ad.domain.async"
local request = require "ad.domain.request"

local M = {}

M.TOOLS = { dispatch = true, dispatch_async = true }
M.POLL_MS = 2000
local RELATED = "io.modelcontextprotocol/related-task"

local STATUS = { pending = "working", running = "working", done = "completed",
                 failed = "failed", cancelled = "cancelled" }

local function iso(t)
  t = tonumber(t) or core.task.time()
  local frac = t - math.floor(t)
  return os.date("!%Y-%m-%dT%H:%M:%S", math.floor(t)) .. string.format(".%03dZ", math.floor(frac * 1000))
end

function M.capabilities()
  local e = function() return json.object({}, {}) end
  return json.object({ list = e(), cancel = e(),
    requests = json.object({ tools = json.object({ call = e() }, { "call" }) }, { "tools" }) },
    { "list", "cancel", "requests" })
end

--- The Task object of a job record.
function M.task_of(rec)
  local status = STATUS[rec.status] or "failed"
  if status == "completed" and type(rec.result) == "table" and rec.result.success == false then
    status = "failed" -- 2025-11-25: an isError result is a failed task
  end
  local msg = rec.error
  if not msg and type(rec.progress) == "table" and #rec.progress > 0 then
    msg = rec.progress[#rec.progress]
  end
  -- A working task whose agent waits for a decision says how to give it
  -- (as the 2026 extension's does for a client without elicitation).
  local p = status == "working" and type(rec.permissions) == "table" and rec.permissions.pending
  if type(p) == "table" and #p > 0 then msg = require("ad.domain.relay").pending_hint(rec) end
  return json.object({ taskId = rec.id, status = status, statusMessage = msg,
    createdAt = iso(rec.created_at),
    lastUpdatedAt = iso(rec.completed_at or rec.progress_updated_at or rec.started_at or rec.created_at),
    ttl = json.null, pollInterval = M.POLL_MS },
    { "taskId", "status", "statusMessage", "createdAt", "lastUpdatedAt", "ttl", "pollInterval" })
end

--- Starts the job behind a task-augmented tools/call. Returns the
--- CreateTaskResult, or nil, message (a tool-level refusal). The server
--- follows the job for notifications/tasks/status (ad.protocol.resources'
--- watch), whether its worker runs here or in a detached job runner.
function M.create(name, args)
  local rec, err = M.submit(name, args)
  if not rec then return nil, err end
  local task = M.task_of(rec)
  return json.object({ task = task, _meta = json.object({
    ["io.modelcontextprotocol/model-immediate-response"] =
      "Started " .. name .. " to " .. tostring(args.agent) .. " as task " .. rec.id .. "; poll tasks/get." },
    { "io.modelcontextprotocol/model-immediate-response" }) }, { "task", "_meta" })
end

--- Starts the job of a tools/call of name as a task (both eras' tasks).
--- Returns its record, or nil, message (a tool-level refusal).
function M.submit(name, args)
  -- The same schema check as tools/call, so both routes accept and refuse
  -- exactly the same arguments.
  local tools = require "ad.tools"
  local vargs, verr = tools.validate(tools.get(name), args)
  if not vargs then return nil, verr end
  args = vargs
  local cfg, err = config.load()
  if not cfg then
    return nil, (require("ad.infra.errors.render").load_line(err):gsub("^%l", string.upper))
  end
  require("ad.storage.jobs").share_limit(cfg.settings.max_concurrency)
  -- dispatch_async has no group parameter; what the schema check let
  -- through is what the request carries.
  local f = util.copy(args)
  if name ~= "dispatch" then f.group = nil end
  local req, rerr = request.build(cfg, f)
  if not req then return nil, rerr end
  return async.submit(req)
end

--- tasks/result: waits until the job is terminal, then the CallToolResult
--- the original call would have returned.
function M.result(id)
  local rec
  repeat
    rec = async.wait(id, 3600)
    -- (a cancelled request: the wait returns at once from now on)
    if not rec or core.task.cancelled() then return nil end
  until jobs.TERMINAL[rec.status]
  local value, is_error
  if type(rec.result) == "table" then
    value = require("ad.domain.runner").result(rec.result)
    is_error = rec.result.success == false
  else
    value, is_error = rec, true
  end
  return json.object({
    content = json.array{ json.object({ type = "text", text = json.encode(value) }, { "type", "text" }) },
    isError = is_error,
    _meta = json.object({ [RELATED] = json.object({ taskId = id }, { "taskId" }) }, { RELATED }),
  }, { "content", "isError", "_meta" })
end

--- A request of server answered later, by fn(reply) in a task of its
--- own, held in flight under key so that notifications/cancelled reaches it: a
--- cancelled request gets no response (reply does nothing), and with
--- stoppable its task is stopped where it waits (tasks/result); without,
--- its work goes on (a cancel or a delivery half done helps nobody).
--- reply(how, ...) calls server[how](server, ...), how "result" or "error".
function M.later(server, id, key, stoppable, fn)
  if key and server.inflight[key] then
    return server:error(id, -32600, "Invalid Request: id " .. key:sub(3) ..
      " is already in use by a request in flight")
  end
  local entry = { cancelled = false, done = false }
  local function settle()
    entry.done = true
    if key and server.inflight[key] == entry then server.inflight[key] = nil end
  end
  local function reply(how, ...)
    if entry.cancelled or entry.done then return end
    settle()
    return server[how](server, ...)
  end
  local t = core.task.spawn(function()
    -- (a job store that cannot be written, its lock held too long: this
    -- request's error, not a request left unanswered)
    local ok, err = pcall(fn, reply)
    if not ok then
      if type(err) == "table" and err.type == "cancelled" then settle() error(err, 0) end
      reply("error", id, -32603, "Internal error: " ..
        tostring(type(err) == "table" and err.message or err):match("^[^\n]*"))
    end
    settle()
  end)
  if stoppable then entry.task = t end
  if key and not entry.done then server.inflight[key] = entry end
end

-- ------------------------------------------------ the server's requests --
-- The task requests of a server (ad.protocol.mcp), here so that the
-- server loads them at the first one, not at start.

--- Answers a tools/call that creates a task (this module's legacy tasks,
--- or the 2026 extension's), in flight under key like any request
--- answered later: checks its arguments, then, in a task of its own (the
--- job's worker, spawned from there, inherits the call budget), creates
--- the job with create(name, args) and answers with the CreateTaskResult,
--- or the tool's error envelope; created(res) then runs. Cancelled before
--- the job is created, it creates none and answers nothing.
function M.answer_create(server, id, key, params, create, modern, created)
  local mcp = require "ad.protocol.mcp"
  local bad = mcp.arguments_error(params.arguments)
  if bad then return server:error(id, -32602, bad) end
  local args = params.arguments or {}
  mcp.ensure_tools() -- the job is checked against the tool's schema
  return M.later(server, id, key, true, function(reply)
    mcp.set_call_budget()
    local ok, res, err = pcall(create, params.name, args)
    if not ok then error(res, 0) end -- (later answers -32603; a cancel ends here)
    if not res then
      return reply("result", id, mcp.text_result(json.encode(require("ad.tools").envelope(err)),
        true), modern)
    end
    reply("result", id, res, modern)
    if created then created(res) end
  end)
end

--- A legacy tools/call with params.task, in flight under key.
function M.call(server, id, key, params)
  if not server.client_tasks or not M.TOOLS[params.name] then
    return server:error(id, -32601, "Method not found: " .. tostring(params.name) ..
      " cannot run as a task")
  end
  return M.answer_create(server, id, key, params, M.create, false, function(res)
    -- notifications/tasks/status on each change of the job from here on
    -- (queued -> running -> its end), wherever it runs.
    local watch = require("ad.protocol.resources").server_watch(server)
    pcall(watch.add, watch, res.task.taskId, "task", "pending")
  end)
end

--- tasks/list, tasks/get, tasks/cancel, tasks/result (legacy), under
--- in-flight key.
function M.method(server, id, key, m, params)
  local tid = params.taskId
  if m == "tasks/list" then
    if params.cursor ~= nil then return server:error(id, -32602, "Invalid params: unknown cursor") end
    local list = json.array()
    for _, rec in ipairs(jobs.list(nil, 100)) do list[#list + 1] = M.task_of(rec) end
    return server:result(id, json.object({ tasks = list }, { "tasks" }))
  end
  local rec = type(tid) == "string" and jobs.valid(tid) and jobs.get(tid)
  if not rec then
    return server:error(id, -32602, "Invalid params: unknown taskId " .. util.repr(tostring(tid)))
  end
  if m == "tasks/get" then
    return server:result(id, M.task_of(rec))
  elseif m == "tasks/cancel" then
    if jobs.TERMINAL[rec.status] then
      return server:error(id, -32602, "Invalid params: task " .. tid .. " is already " .. rec.status)
    end
    return M.later(server, id, key, false, function(reply)
      async.cancel(tid)
      reply("result", id, M.task_of(jobs.get(tid) or rec))
    end)
  elseif m == "tasks/result" then
    return M.later(server, id, key, true, function(reply)
      local r = M.result(tid)
      if not r then return reply("error", id, -32602, "Invalid params: unknown taskId " .. tid) end
      reply("result", id, r)
    end)
  end
  return server:error(id, -32601, "Method not found: " .. m)
end

return M
