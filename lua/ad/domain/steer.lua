--- Messages to running jobs: what the owner of a job (the process whose
--- task runs it: a server, a detached job runner) does with the messages
--- of its inbox (ad.storage.inbox), and the sending side of
--- dispatch_steer / `agent-dispatch steer` and of a cancel from another
--- process.
---
---   steer.handlers[kind] = function(run, msg) -> reply   the owner side;
---       built in: steer {text} (a user message into the live child),
---       interrupt {} (cancel: the child is interrupted, given the grace,
---       then killed). Other modules add kinds (e.g. approve).
---   steer.serve(run) -> server | nil   (ad.domain.async, when a run
---       becomes a job)
---   steer.apply(run, msg) -> reply     a message to a job of this process
---   steer.steer(job_id, text, by) -> response | nil, "not_found"
---       response = {job_id, outcome = "delivered" | "not_running" |
---       "not_steerable" | "error", message}
---
--- A steer is recorded on the job (messages: kind, text, by, at) once it
--- is written to the child.
local core = require "ad.core"
local json = require "ad.infra.json"
local util = require "ad.infra.util"
local jobs = require "ad.storage.jobs"
local inbox = require "ad.storage.inbox"

local M = {}

--- Longest steering message (bytes).
M.MAX_TEXT = require("ad.infra.limits").MAX_MESSAGE

M.handlers = {}

local function refused(outcome, message)
  return { ok = false, outcome = outcome, error = message }
end

M.handlers.steer = function(run, msg)
  local id = run.id
  if type(msg.text) ~= "string" or msg.text == "" then
    return refused("error", "the message is empty")
  end
  local ch = run.channel
  if not ch then
    if run.transport == "oneshot" then
      return refused("not_steerable", "Job " .. id .. " runs its agent over the one-shot " ..
        "transport (claude -p with the whole task at the start), which takes no " ..
        "messages while it works. Steering needs the live transport: settings.transport " ..
        "auto with a claude CLI that has --input-format stream-json, or live.")
    end
    return refused("not_running", "Job " .. id .. " has no agent working right now " ..
      "(not started yet, or finished).")
  end
  if not ch:steerable() then
    return refused("not_running", "The agent of job " .. id .. " has already answered " ..
      "(its input is closed); the message was not delivered. Continue its session with " ..
      "dispatch_session once the job is done.")
  end
  local ok, err = ch:send_user(msg.text)
  if not ok then
    return refused("not_running", "The agent of job " .. id .. " no longer takes input (" ..
      tostring(err) .. "); the message was not delivered.")
  end
  pcall(jobs.record_message, id, json.object({ kind = "steer", text = util.cut(msg.text, 2000),
    by = msg.by, at = msg.at or core.task.time() }, { "kind", "text", "by", "at" }))
  return { ok = true, outcome = "delivered" }
end

M.handlers.interrupt = function(run, msg)
  local async = require "ad.domain.async"
  local out = async.cancel(run.id)
  pcall(jobs.record_message, run.id, json.object({ kind = "interrupt", by = msg.by,
    at = msg.at or core.task.time() }, { "kind", "by", "at" }))
  -- Answered once the child is gone (interrupted, or killed after the
  -- grace), so the sender can say so.
  run.done:wait(30)
  return { ok = true, outcome = out and out.outcome or "cancelled_running" }
end

function M.apply(run, msg)
  local h = M.handlers[msg.kind]
  if not h then return refused("error", "jobs do not take '" .. tostring(msg.kind) .. "' messages") end
  local ok, r = pcall(h, run, msg)
  if not ok then return refused("error", type(r) == "table" and tostring(r.message) or tostring(r)) end
  return r
end

function M.serve(run)
  local wrapped = {}
  for kind in pairs(M.handlers) do
    wrapped[kind] = function(msg) return M.apply(run, msg) end
  end
  -- Kinds added later (after this job started) are looked up per message.
  setmetatable(wrapped, { __index = function(_, kind)
    if M.handlers[kind] then return function(msg) return M.apply(run, msg) end end
  end })
  local ok, s = pcall(inbox.serve, run.id, wrapped)
  return ok and s or nil
end

local function response(id, outcome, message)
  return json.object({ job_id = id, outcome = outcome, delivered = outcome == "delivered",
    message = message }, { "job_id", "outcome", "delivered", "message" })
end

function M.steer(id, text, by)
  local rec = jobs.get(id)
  if not rec then return nil, "not_found" end
  if type(text) ~= "string" or util.strip(text) == "" then
    return response(id, "error", "The message is empty.")
  end
  if #text > M.MAX_TEXT then
    return response(id, "error", "The message is " .. #text .. " bytes; at most " ..
      M.MAX_TEXT .. " are sent to a running agent.")
  end
  if jobs.TERMINAL[rec.status] then
    return response(id, "not_running", "Job " .. id .. " has ended (" .. rec.status ..
      "); nothing to steer." .. (rec.session_id and (" Continue its session with " ..
      "dispatch_session(session_id=" .. rec.session_id .. ").") or ""))
  end
  local run = require("ad.domain.async").local_job(id)
  local msg = { kind = "steer", text = text, by = by, at = core.task.time() }
  local reply, why, code
  if run then
    reply = M.apply(run, msg)
  else
    reply, why, code = inbox.post(id, msg, { by = by })
  end
  if not reply then
    return response(id, code == "not_running" and "not_running" or "error", why)
  end
  if reply.ok then
    return response(id, "delivered", "Delivered to the agent of job " .. id .. " as a user " ..
      "message; its answer will reflect it (dispatch_wait / dispatch_status).")
  end
  return response(id, reply.outcome or "error", reply.error or "refused")
end

return M
