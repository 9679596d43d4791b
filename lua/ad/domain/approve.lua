--- Answering a permission request a job's agent waits on (the
--- dispatch_approve tool, CLI `approve` / `deny`): the answer is checked
--- against the job's record, then posted to the job's inbox
--- (ad.storage.inbox, kind "approve"), where the process that runs the job
--- hands it to the waiting child (ad.domain.relay) and records it; a job
--- of this process takes it directly.
local json = require "ad.infra.json"
local util = require "ad.infra.util"

local M = {}

local function pending_of(rec)
  local p = type(rec.permissions) == "table" and rec.permissions or {}
  return type(p.pending) == "table" and p.pending or {}
end

local function decided(rec, request_id)
  local p = type(rec.permissions) == "table" and rec.permissions or {}
  for _, d in ipairs(type(p.decisions) == "table" and p.decisions or {}) do
    if type(d) == "table" and d.request_id == request_id then return d end
  end
  return nil
end

local function ids(list)
  local out = {}
  for _, e in ipairs(list) do
    out[#out + 1] = tostring(e.request_id) .. " (" .. tostring(e.tool) .. ")"
  end
  return table.concat(out, ", ")
end

--- The pending request of job rec that request_id names (nil: the only
--- one), or nil and why not.
function M.find(rec, request_id)
  local pending = pending_of(rec)
  if request_id == nil or request_id == "" then
    if #pending == 1 then return pending[1] end
    if #pending == 0 then
      return nil, "Job " .. rec.id .. " has no pending permission request."
    end
    return nil, "Job " .. rec.id .. " has " .. #pending .. " pending permission requests; " ..
      "name one: " .. ids(pending) .. "."
  end
  for _, e in ipairs(pending) do
    if e.request_id == request_id then return e end
  end
  local d = decided(rec, request_id)
  if d then
    return nil, "Request " .. request_id .. " of job " .. rec.id .. " was already decided: " ..
      tostring(d.decision) .. " (by " .. tostring(d.by) .. ")."
  end
  return nil, "Job " .. rec.id .. " has no pending permission request " ..
    util.repr(request_id) .. (#pending > 0 and (" (pending: " .. ids(pending) .. ")") or "") .. "."
end

-- updated_input as an object (given as one or as its JSON text).
local function input_of(v)
  if v == nil or v == json.null or v == "" then return nil end
  if type(v) == "string" then
    local t, err = json.decode(v)
    if err or type(t) ~= "table" or (next(t) ~= nil and json.is_array(t)) then
      return nil, "updated_input must be a JSON object (or its JSON text)"
    end
    v = t
  end
  if type(v) ~= "table" or (next(v) ~= nil and json.is_array(v)) then
    return nil, "updated_input must be a JSON object (or its JSON text)"
  end
  return v
end

--- Posts a decision. opts: message, updated_input, by (who: "dispatch_approve",
--- "cli"). Returns {job_id, request_id, tool, decision, applied, ...} or
--- nil and the error message.
function M.post(id, request_id, verdict, opts)
  local jobs = require "ad.storage.jobs"
  opts = opts or {}
  if type(id) ~= "string" or not jobs.valid(id) then
    return nil, "Invalid job_id format: " .. util.repr(tostring(id)) .. " (expected a 32-char hex id)"
  end
  verdict = util.strip(tostring(verdict or "")):lower()
  if verdict ~= "allow" and verdict ~= "deny" then
    return nil, "decision must be \"allow\" or \"deny\", got " .. util.repr(verdict)
  end
  -- (a message goes to the agent's model as a steer does: bounded alike)
  local max = require("ad.infra.limits").MAX_MESSAGE
  if type(opts.message) == "string" and #opts.message > max then
    return nil, "message is " .. #opts.message .. " bytes; at most " .. max ..
      " are sent to a running agent"
  end
  local edit, ierr = input_of(opts.updated_input)
  if ierr then return nil, ierr end
  if edit and verdict == "deny" then
    return nil, "updated_input goes with decision \"allow\" only"
  end
  local rec = jobs.get(id)
  if not rec then return nil, "Job not found: " .. id end
  if jobs.TERMINAL[rec.status] then
    return nil, "Job " .. id .. " has ended (" .. rec.status .. "); there is nothing to " ..
      (verdict == "allow" and "approve" or "deny") .. "."
  end
  local entry, ferr = M.find(rec, request_id)
  if not entry then return nil, ferr end
  local msg = json.object({ kind = "approve", request_id = entry.request_id, decision = verdict,
    message = opts.message, updated_input = edit, by = opts.by or "dispatch_approve" },
    { "kind", "request_id", "decision", "message", "updated_input", "by" })
  -- A job of this process takes it directly, any other through its inbox.
  local run = require("ad.domain.async").local_job(id)
  local ok, reply, perr
  if run then
    ok, reply = true, require("ad.domain.steer").apply(run, msg)
  else
    ok, reply, perr = pcall(require("ad.storage.inbox").post, id, msg, { by = msg.by })
  end
  if not ok or not reply then
    local why = ok and perr or reply
    return nil, "The decision could not be delivered to job " .. id .. ": " ..
      tostring(type(why) == "table" and why.message or why)
  end
  if reply.ok == false then
    return nil, "Job " .. id .. " did not take the decision: " .. tostring(reply.error)
  end
  return json.object({ job_id = id, request_id = entry.request_id, tool = entry.tool,
    decision = verdict, edited = edit ~= nil or nil, applied = true,
    hint = "The agent goes on; dispatch_wait(job_id=\"" .. id .. "\") gets its answer." },
    { "job_id", "request_id", "tool", "decision", "edited", "applied", "hint" })
end

local function when(t)
  return type(t) == "number" and os.date("!%Y-%m-%dT%H:%M:%SZ", math.floor(t)) or "?"
end

--- The permission part of CLI `job`, as lines: pending requests (with the
--- commands that answer each) and the decisions made.
function M.lines(r)
  local jobs = require "ad.storage.jobs"
  local lines = {}
  local p = type(r.permissions) == "table" and r.permissions or {}
  local pending = type(p.pending) == "table" and p.pending or {}
  if #pending > 0 and not jobs.TERMINAL[r.status] then
    lines[#lines + 1] = "  awaiting approval:"
    for _, e in ipairs(pending) do
      lines[#lines + 1] = "    " .. tostring(e.request_id) .. "  " .. tostring(e.tool) .. " " ..
        util.cut(json.encode(e.input or json.object({}, {})), 300)
      lines[#lines + 1] = "      answer: agent-dispatch approve " .. r.id .. " " ..
        tostring(e.request_id) .. "   (or: agent-dispatch deny " .. r.id .. " " ..
        tostring(e.request_id) .. " --message M)"
    end
  end
  local decisions = type(p.decisions) == "table" and p.decisions or {}
  if #decisions > 0 then
    lines[#lines + 1] = "  permissions:"
    for _, d in ipairs(decisions) do
      lines[#lines + 1] = "    " .. when(d.at) .. "  " .. tostring(d.decision) .. " " ..
        tostring(d.tool) .. " by " .. tostring(d.by) .. (d.rule and (" (" .. d.rule .. ")") or "") ..
        (d.edited and " with an edited input" or "") ..
        (d.message and (": " .. util.cut(d.message, 200)) or "")
    end
  end
  return lines
end

return M
