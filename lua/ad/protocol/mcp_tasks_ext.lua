--- The 2026-07-28 Tasks extension (`io.modelcontextprotocol/tasks`, MCP.md
--- 3.9) for requests that declare it: dispatch_async answers with a
--- CreateTaskResult, tasks/get maps the job's status, tasks/update answers
--- the permission requests its agent waits on, tasks/cancel cancels the
--- job. A request that does not declare the extension sees none of this
--- (tools/call answers as before; tasks/* get -32021).
---
--- Task ids are bearer tokens (MCP.md: at least 128 random bits):
--- "<job id>.<token>", the token 32 hex digits of 128 random bits stored
--- in the job record (ad.storage.jobs.task_token) and never shown. The job
--- keeps its id everywhere else (dispatch_* tools, CLI, job files). A task
--- id whose token is wrong or missing is answered as an unknown one; the
--- token is compared in constant time.
---
--- A job whose agent waits for permission decisions (ad.domain.relay) is
--- `input_required` with one elicitation/create form per pending request,
--- keyed "permission-<request id>" (request ids are unique over the job's
--- life) - only for a tasks/get whose request declared form elicitation;
--- otherwise it stays `working` and its statusMessage says how else to
--- answer. tasks/update delivers each answer as dispatch_approve does
--- (ad.domain.approve, recorded with by "elicitation"); keys that are not
--- outstanding are ignored, partial sets accepted.
local core = require "ad.core"
local json = require "ad.infra.json"
local util = require "ad.infra.util"

local M = {}

M.ID = "io.modelcontextprotocol/tasks"
M.TOOLS = { dispatch_async = true }
M.POLL_MS = 2000

local STATUS = { pending = "working", running = "working", done = "completed",
                 failed = "failed", cancelled = "cancelled" }

local TASK_KEYS = { "resultType", "taskId", "status", "statusMessage", "createdAt",
  "lastUpdatedAt", "ttlMs", "pollIntervalMs", "inputRequests", "result", "error", "_meta" }

--- Did the request (its clientCapabilities) declare the extension?
function M.declared(caps)
  local ext = type(caps) == "table" and type(caps.extensions) == "table" and caps.extensions[M.ID]
  return type(ext) == "table"
end

local function iso(t)
  t = tonumber(t) or core.task.time()
  local frac = t - math.floor(t)
  return os.date("!%Y-%m-%dT%H:%M:%S", math.floor(t)) .. string.format(".%03dZ", math.floor(frac * 1000))
end

local function mrtr() return require "ad.protocol.mcp_mrtr" end

local function pending_of(rec)
  local p = type(rec.permissions) == "table" and rec.permissions.pending
  return type(p) == "table" and p or {}
end

-- The CallToolResult the call would have returned (isError included).
local function call_result(rec)
  local value = rec.result
  return json.object({
    content = json.array{ json.object({ type = "text", text = json.encode(value) }, { "type", "text" }) },
    isError = require("ad.tools").is_error_result(value) },
    { "content", "isError" })
end

--- The task id of job id (its token made on first use), or nil.
function M.task_id(id)
  local token = require("ad.storage.jobs").task_token(id)
  return token and id .. "." .. token or nil
end

--- The job record behind task id tid, or nil when tid names no task
--- (malformed, no such job, or not the job's token).
function M.resolve(tid)
  local jobs = require "ad.storage.jobs"
  if type(tid) ~= "string" then return nil end
  local id, token = tid:match("^(%x+)%.(%x+)$")
  if not id or #token ~= 32 or not jobs.valid(id) then return nil end
  local rec, want = jobs.get_with_token(id)
  if not rec or type(want) ~= "string" or not core.text.same(want, token) then return nil end
  return rec
end

--- The Task of a job record (task id tid), for a request that did
--- (elicits) or did not declare form elicitation.
function M.task_of(rec, elicits, tid)
  local status = STATUS[rec.status] or "failed"
  local t = json.object({ taskId = tid, status = status, createdAt = iso(rec.created_at),
    lastUpdatedAt = iso(rec.completed_at or rec.progress_updated_at or rec.started_at or rec.created_at),
    ttlMs = json.null, pollIntervalMs = M.POLL_MS }, TASK_KEYS)
  if type(rec.progress) == "table" and #rec.progress > 0 then
    t.statusMessage = rec.progress[#rec.progress]
  end
  local pending = pending_of(rec)
  if status == "working" and #pending > 0 then
    if elicits then
      t.status = "input_required"
      t.inputRequests = json.object({}, {})
      local order = getmetatable(t.inputRequests).__order
      for _, e in ipairs(pending) do
        local k = "permission-" .. tostring(e.request_id):gsub("[^%w%-_.]", "_")
        order[#order + 1] = k
        t.inputRequests[k] = mrtr().elicitation(e)
      end
    else
      t.statusMessage = require("ad.domain.relay").pending_hint(rec)
    end
  elseif status == "completed" then
    if type(rec.result) == "table" then
      t.result = call_result(rec)
    else
      status = "failed"
    end
  end
  if status == "failed" then
    t.status = "failed"
    t.statusMessage = rec.error or "The job ended without a result."
    t.error = json.object({ code = -32603, message = "Internal error: " .. tostring(t.statusMessage) },
      { "code", "message" })
  end
  return t
end

--- dispatch_async as a task: the job is written before this returns (a
--- tasks/get finds it). Returns the CreateTaskResult, or nil and the
--- tool-level refusal.
function M.create(name, args)
  local rec, err = require("ad.protocol.mcp_tasks").submit(name, args)
  if not rec then return nil, err end
  local t = M.task_of(rec, false, M.task_id(rec.id))
  t.resultType = "task"
  return t
end

--- The answers in inputResponses to job rec's outstanding requests:
--- {request_id, verdict, message}, or nil and what is malformed.
function M.answers(rec, responses)
  local out = {}
  if type(responses) ~= "table" or (next(responses) ~= nil and json.is_array(responses)) then
    return nil, "inputResponses must be an object keyed like inputRequests"
  end
  for _, e in ipairs(pending_of(rec)) do
    local k = "permission-" .. tostring(e.request_id):gsub("[^%w%-_.]", "_")
    if responses[k] ~= nil then
      local verdict, msg = mrtr().verdict_of(responses[k])
      if not verdict then return nil, "inputResponses." .. k .. ": " .. msg end
      out[#out + 1] = { request_id = tostring(e.request_id), verdict = verdict, message = msg }
    end
  end
  return out
end

--- Delivers answers to job id (see ad.protocol.mcp_mrtr.deliver).
function M.deliver(id, answers, log)
  mrtr().deliver(id, answers, log or function() end)
end

-- ------------------------------------------------ the server's requests --
-- The extension's requests to a server (ad.protocol.mcp), here so that
-- the server loads them at the first one, not at start.

--- A tools/call of one of M.TOOLS by a request that declared the
--- extension, in flight under key.
function M.call(server, id, key, params)
  return require("ad.protocol.mcp_tasks").answer_create(server, id, key, params, M.create, true)
end

--- tasks/get, tasks/update, tasks/cancel under in-flight key; caps: the
--- request's clientCapabilities.
function M.method(server, id, key, m, params, caps)
  local tid = params.taskId
  local rec = M.resolve(tid)
  if not rec then
    return server:error(id, -32602, "Invalid params: unknown taskId " .. util.repr(tostring(tid)))
  end
  local job = rec.id
  if m == "tasks/get" then
    local elicits = caps.elicitation ~= nil and mrtr().declared(caps)
    return server:result(id, M.task_of(rec, elicits, tid), true)
  end
  local later = require("ad.protocol.mcp_tasks").later
  if m == "tasks/cancel" then
    return later(server, id, key, false, function(reply)
      pcall(require("ad.domain.async").cancel, job)
      reply("result", id, json.object({}, { "resultType", "_meta" }), true)
    end)
  end
  local answers, why = M.answers(rec, params.inputResponses)
  if not answers then return server:error(id, -32602, "Invalid params: " .. why) end
  later(server, id, key, false, function(reply)
    pcall(M.deliver, job, answers)
    reply("result", id, json.object({}, { "resultType", "_meta" }), true)
  end)
end

return M
