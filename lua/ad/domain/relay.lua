--- The permission relay: a child that runs with
--- `--permission-prompt-tool stdio` asks `can_use_tool` over its control
--- channel (ad.domain.channel) before each tool use its own settings do
--- not allow; this module answers it.
---
--- Each request is decided by the agent's rules and the on_permission
--- hooks (ad.domain.relay_policy); what they leave to "ask" goes to the
--- caller:
---   - a 2025-06-18 / 2025-11-25 MCP client that declared elicitation (form
---     mode) gets an `elicitation/create` request while its tools/call is
---     in flight (req.elicit, given by ad.protocol.mcp);
---   - otherwise, when the run is a job or can become one, the request is
---     recorded on the job as pending (a sync call returns at once with
---     status "awaiting_approval": M.awaiting, which a 2026-07-28 request
---     that declared elicitation gets as an input_required result:
---     ad.protocol.mcp_mrtr) and the child waits for a
---     decision delivered through the job's inbox (ad.storage.inbox, kind
---     "approve": dispatch_approve, CLI approve / deny);
---   - with neither (a call that cannot hand off), it is denied with a
---     message saying why.
--- An unanswered request is denied after permissions.timeout_seconds with a
--- message the child's model sees. The answer allows with the child's own
--- input unless the caller sent updated_input (recorded as an edit).
--- Every decision is recorded on the job (permissions.decisions: by, what,
--- when); pending requests are in permissions.pending.
---
--- The run of a dispatch (ad.domain.async) carries the relay's state in
--- run.relay = {pending = {request_id -> entry}, decisions = {...}}.
local core = require "ad.core"
local json = require "ad.infra.json"
local util = require "ad.infra.util"
local policy = require "ad.domain.relay_policy"

local M = {}

M.DECISION_KEYS = require("ad.storage.jobs").DECISION_KEYS
M.PENDING_KEYS = { "request_id", "tool", "input", "agent", "description", "asked_at",
  "expires_at" }

--- The relay settings of req's agent, or nil when the relay is off.
function M.settings(req)
  return policy.settings(req.agent)
end

local function state(run)
  if not run then return nil end
  run.relay = run.relay or { pending = {}, decisions = {}, order = {} }
  return run.relay
end

local function pending_entry(pr, expires)
  return json.object({ request_id = pr.request_id, tool = pr.tool, input = pr.input,
    agent = pr.agent, description = pr.description, asked_at = pr.asked_at,
    expires_at = expires }, M.PENDING_KEYS)
end

local function log_err(what, err)
  io.stderr:write("agent-dispatch: permission relay: ", what, ": ",
    tostring(type(err) == "table" and err.message or err), "\n")
end

-- Writes to the job of run (best effort: a record that cannot be written
-- must not stop the child; the decision still reaches it).
local function update_job(run, fn)
  if not run or not run.id then return end
  local ok, err = pcall(require("ad.storage.jobs").update_permissions, run.id, fn)
  if not ok then log_err("cannot record on job " .. run.id, err) end
end

-- The decision as recorded and returned: its message through the redact
-- hooks (ad.domain.plugins.redact_decision).
local function shown(d)
  local plugins = package.loaded["ad.domain.plugins"]
  return plugins and plugins.redact_decision(d) or d
end

-- Records a decision on the run (and its job, once it is one).
local function record(run, d)
  local st = state(run)
  if not st then return end
  d = shown(d)
  st.decisions[#st.decisions + 1] = d
  st.pending[d.request_id] = nil
  update_job(run, function(p)
    for i = #p.pending, 1, -1 do
      if type(p.pending[i]) == "table" and p.pending[i].request_id == d.request_id then
        table.remove(p.pending, i)
      end
    end
    p.decisions[#p.decisions + 1] = d
  end)
end

--- The response of a control_request for a decision (what the CLI reads):
--- allow with the input to use, or deny with a message for the model.
function M.response(pr, d)
  if d.decision == "allow" then
    return json.object({ behavior = "allow",
      updatedInput = d.updated_input or pr.raw_input or pr.input or json.object({}, {}) },
      { "behavior", "updatedInput" })
  end
  return json.object({ behavior = "deny", message = d.message or "Denied." },
    { "behavior", "message" })
end

-- The most a decision's message carries to the agent's model (and into
-- the job's record), in code points: a steer's bound.
M.MAX_MESSAGE = require("ad.infra.limits").MAX_MESSAGE

local function decision(pr, verdict, by, fields)
  fields = fields or {}
  local message = fields.message
  if type(message) == "string" and #message > M.MAX_MESSAGE then
    message = util.cut(message, M.MAX_MESSAGE) .. "…"
  end
  local d = json.object({ request_id = pr.request_id, tool = pr.tool, decision = verdict,
    by = by, at = core.task.time(), rule = fields.rule, message = message },
    M.DECISION_KEYS)
  if verdict == "allow" and fields.updated_input ~= nil then
    d.updated_input, d.edited = fields.updated_input, true
  end
  return d
end

-- ---------------------------------------------------------- elicitation --

--- Set by the server as it stops: a request whose wait ends then was not
--- cancelled by anyone, nobody is left to ask (ad.protocol.mcp).
M.server_stopping = false

-- The decision when the wait for an answer was cut short while the child
-- asked: a denial (the channel's reader then sees the cancellation and
-- stops the child; raising here would leave it to no one). Recorded as the
-- cancel it was, or, when the server is stopping, as a request nobody could
-- be asked any more.
local function cancelled(pr)
  if M.server_stopping then
    return decision(pr, "deny", "relay", { message =
      "The server stopped while the request waited; nobody could be asked." })
  end
  return decision(pr, "deny", "cancel", { message = "The dispatch was cancelled." })
end


--- The form an elicitation/create request carries (mode is added by the
--- protocol layer where the version knows it).
function M.elicit_params(pr)
  local input = pr.raw_input and pr.raw_input[1] or json.encode(pr.input or json.object({}, {}))
  local msg = "Agent " .. tostring(pr.agent) .. " asks to use the tool " .. tostring(pr.tool) ..
    (pr.description and pr.description ~= "" and (" (" .. pr.description .. ")") or "") ..
    ".\nInput:\n" .. input .. "\nAllow it?"
  local schema = json.object({ type = "object",
    properties = json.object({
      decision = json.object({ type = "string", title = "Decision",
        description = "allow lets the agent run the tool with this input; deny refuses it.",
        enum = json.array{ "allow", "deny" } }, { "type", "title", "description", "enum" }),
      message = json.object({ type = "string", title = "Message to the agent",
        description = "Optional: why, or what to do instead (the agent sees it)." },
        { "type", "title", "description" }) }, { "decision", "message" }),
    required = json.array{ "decision" } }, { "type", "properties", "required" })
  return json.object({ message = msg, requestedSchema = schema }, { "mode", "message", "requestedSchema" })
end

-- Asks the MCP client (elicitation/create). Returns the decision.
local function elicit(req, pr, timeout)
  local res, err = req.elicit(M.elicit_params(pr), timeout)
  if res == nil and err == "cancelled" then return cancelled(pr) end
  if res == nil and err == "timeout" then
    return decision(pr, "deny", "timeout", { message = "No answer to the permission request " ..
      "for " .. tostring(pr.tool) .. " within " .. util.num(timeout) .. " s, so it was denied." })
  end
  if type(res) ~= "table" then
    return decision(pr, "deny", "elicitation", { message = "The permission request could not " ..
      "be put to the caller (" .. tostring(err) .. "), so it was denied." })
  end
  local content = type(res.content) == "table" and res.content or {}
  local note = type(content.message) == "string" and util.nonempty(util.strip(content.message)) or nil
  if res.action == "accept" and content.decision == "allow" then
    return decision(pr, "allow", "elicitation", { message = note })
  elseif res.action == "accept" and content.decision == "deny" then
    return decision(pr, "deny", "elicitation", { message = note or "The caller denied it." })
  end
  return decision(pr, "deny", "elicitation", { message = note or ("The caller " ..
    (res.action == "decline" and "declined" or "dismissed") .. " the permission request.") })
end

-- Asks the MCP client, the request pending on the run meanwhile: a call
-- handed off to a job while the client has not answered shows it on the
-- job (M.adopted), where dispatch_approve answers it (M.deliver). The
-- first answer decides. Returns the decision, and true when M.deliver
-- recorded it.
local function ask_client(run, req, pr, timeout)
  local st = state(run)
  if not st then return elicit(req, pr, timeout) end
  local entry = { event = core.task.event(), pr = pr, expires_at = core.task.time() + timeout }
  st.pending[pr.request_id] = entry
  st.order[#st.order + 1] = pr.request_id
  st.asking = pr -- (a hand-off now answers awaiting_approval: M.awaiting)
  local asker = core.task.spawn(function()
    local d = elicit(req, pr, timeout)
    if not entry.answer then
      entry.answer = d
      entry.event:set(d)
    end
  end)
  local d, why = entry.event:wait(timeout + 1)
  asker:cancel()
  if st.asking == pr then st.asking = nil end
  if why == "cancelled" then
    st.pending[pr.request_id] = nil
    return cancelled(pr)
  end
  if not d then
    st.pending[pr.request_id] = nil
    return decision(pr, "deny", "timeout", { message = "No answer to the permission request " ..
      "for " .. tostring(pr.tool) .. " within " .. util.num(timeout) .. " s, so it was denied." })
  end
  -- (answered through the job: M.deliver recorded it; else record() does)
  return d, entry.delivered == true
end

-- ----------------------------------------------------------------- jobs --

-- Delivers an approve message (from the job's inbox) to the request it
-- answers. Returns true when a request of this run was waiting for it.
-- The decision is recorded here, before the poster hears that it was
-- taken: a dispatch_status or dispatch_wait right after it sees it.
function M.deliver(run, msg)
  local st = run and run.relay
  local entry = st and type(msg) == "table" and st.pending[msg.request_id]
  if not entry or entry.answer then return false end
  local pr = entry.pr
  local by = type(msg.by) == "string" and msg.by or "dispatch_approve"
  local note = type(msg.message) == "string" and util.nonempty(msg.message) or nil
  local d
  if msg.decision == "allow" then
    local edit = type(msg.updated_input) == "table" and msg.updated_input or nil
    d = decision(pr, "allow", by, { message = note, updated_input = edit })
  else
    d = decision(pr, "deny", by, { message = note or ("Denied by the caller (" .. by .. ").") })
  end
  entry.answer, entry.delivered = d, true
  record(run, d)
  entry.event:set(d)
  return true
end

--- The handler of the "approve" kind of a job's inbox (ad.domain.steer):
--- hands the decision to the request of run waiting here; its return
--- value is the poster's reply.
function M.on_approve(run, msg)
  if M.deliver(run, msg) then return { ok = true, delivered = true } end
  return { ok = false, error = "no request " .. util.repr(tostring(msg.request_id)) ..
    " of job " .. tostring(run.id) .. " waits for a decision (already decided, or timed out)" }
end

-- Makes sure the job of run takes its messages: ad.domain.async serves
-- the inbox of every job (ad.domain.steer, where the approve kind is
-- registered below); a run without one gets it here.
local function serve(run)
  if run.inbox or not run.id then return end
  run.inbox = require("ad.domain.steer").serve(run)
  if not run.inbox then log_err("cannot serve the inbox of job " .. run.id, "inbox.serve failed") end
end

--- The run became a job (ad.domain.dispatch's hand-off, with rec or nil
--- when no job could be written): decisions made so far and pending
--- requests go on its record, and its inbox is watched.
function M.adopted(run, rec)
  local st = run.relay
  if not st then return end
  if rec then
    local pend = {}
    for _, id in ipairs(st.order) do
      local e = st.pending[id]
      if e then pend[#pend + 1] = pending_entry(e.pr, e.expires_at) end
    end
    serve(run)
    update_job(run, function(p)
      for _, d in ipairs(st.decisions) do p.decisions[#p.decisions + 1] = d end
      for _, e in ipairs(pend) do p.pending[#p.pending + 1] = e end
    end)
  end
  if st.adopted then st.adopted:set(rec and true or false) end
end

-- Waits for the caller's decision on a job's pending request.
local function ask_job(run, pr, timeout)
  local st = state(run)
  local entry = { event = core.task.event(), pr = pr,
    expires_at = core.task.time() + timeout }
  st.pending[pr.request_id] = entry
  st.order[#st.order + 1] = pr.request_id
  local deadline = core.task.now() + timeout
  if not run.id then
    -- A sync call: it returns now with status awaiting_approval and the
    -- run becomes a job (M.adopted writes this request on its record).
    if not st.adopted then
      st.adopted = core.task.event()
      st.asking = pr
      run.asking:set(pr)
    end
    local ok, why = st.adopted:wait(timeout)
    if why == "cancelled" then return cancelled(pr) end
    if not ok then
      st.pending[pr.request_id] = nil
      return decision(pr, "deny", "relay", { message = "The permission request for " ..
        tostring(pr.tool) .. " could not be recorded on a job for the caller to answer, " ..
        "so it was denied." })
    end
  else
    -- Served before it shows as pending: an answer may come at once.
    serve(run)
    update_job(run, function(p) p.pending[#p.pending + 1] = pending_entry(pr, entry.expires_at) end)
  end
  if run.attention then run.attention(pr) end
  local msg, why = entry.event:wait(math.max(0, deadline - core.task.now()))
  if why == "cancelled" then return cancelled(pr) end
  if not msg then
    return decision(pr, "deny", "timeout", { message = "No decision on the permission " ..
      "request for " .. tostring(pr.tool) .. " within " .. util.num(timeout) ..
      " s, so it was denied." })
  end
  return msg, true -- recorded by M.deliver
end

-- ------------------------------------------------------------ the door --

-- Seconds a request may wait for the caller: timeout_seconds, but never
-- longer than the dispatch itself may run (its child is killed then, and
-- the reader of its channel waits in this handler meanwhile).
local function wait_limit(req, settings)
  local ok, eff = pcall(require("ad.domain.request").effective, req)
  local cap = ok and eff.timeout or nil
  if type(cap) == "number" and cap > 0 and cap < settings.timeout then return cap end
  return settings.timeout
end

--- Decides one can_use_tool request of req's child: returns the decision
--- record (see M.DECISION_KEYS), after recording it. msg is the
--- control_request line as decoded.
--- line: the control_request as the child wrote it, whose input is given
--- back byte for byte (decoded JSON would turn [] into {} and round long
--- numbers).
function M.decide(req, msg, line)
  local settings = M.settings(req) or { allow = {}, deny = {}, timeout = policy.DEFAULT_TIMEOUT }
  local r = type(msg.request) == "table" and msg.request or {}
  local raw = line and core.json.raw_member(line, "request")
  raw = raw and core.json.raw_member(raw, "input")
  local pr = { request_id = tostring(msg.request_id), tool = r.tool_name,
    input = type(r.input) == "table" and r.input or json.object({}, {}), agent = req.agent_name,
    raw_input = raw and raw:sub(1, 1) == "{" and json.raw(raw) or nil,
    description = type(r.description) == "string" and r.description or nil,
    asked_at = core.task.time() }
  local run = req.relay_run
  local plugins = package.loaded["ad.domain.plugins"]
  local verdict, by, detail
  if type(pr.tool) ~= "string" or pr.tool == "" then
    -- (not a request anyone can judge: no rule, hook or person is asked)
    pr.tool = nil
    verdict, by = "malformed", "relay"
  else
    verdict, by, detail = policy.decide(settings, pr, plugins and plugins.hooks.on_permission)
  end
  local d, recorded
  if verdict == "malformed" then
    d = decision(pr, "deny", by, { message = "The permission request named no tool " ..
      "(its tool_name was not a string), so it was denied." })
  elseif verdict == "allow" then
    d = decision(pr, "allow", by, { rule = by == "rule" and detail or nil,
      message = by == "hook" and detail or nil })
  elseif verdict == "deny" then
    d = decision(pr, "deny", by, { rule = by == "rule" and detail or nil,
      message = by == "rule" and ("Denied by the rule " .. detail .. " of agent " ..
        tostring(req.agent_name) .. ".") or detail })
  elseif req.elicit then
    d, recorded = ask_client(run, req, pr, wait_limit(req, settings))
  elseif run and (run.id or run.asking) then
    d, recorded = ask_job(run, pr, wait_limit(req, settings))
  else
    d = decision(pr, "deny", "relay", { message = "The use of " .. tostring(pr.tool) ..
      " needs the caller's approval, but this call can neither ask its client " ..
      "(no elicitation) nor return early to wait for it (hand-off off); it was denied. " ..
      "Allow it in permissions.allow of agent " .. tostring(req.agent_name) .. "." })
  end
  if not recorded then record(run, d) end
  if req.relay_log then req.relay_log[#req.relay_log + 1] = shown(d) end
  if req.log then
    req.log("info", "Permission " .. d.decision .. " (" .. d.by .. ") for " ..
      tostring(pr.tool) .. " of agent " .. tostring(req.agent_name))
  end
  return d, pr
end

--- The on_control_request handler of req's channel: can_use_tool goes
--- through M.decide; other requests are not ours (nil).
function M.handler(req)
  return function(msg, reply, line)
    local r = type(msg) == "table" and msg.request
    if type(r) ~= "table" or r.subtype ~= "can_use_tool" then return nil end
    local d, pr = M.decide(req, msg, line)
    reply(M.response(pr, d))
    return true
  end
end

-- ------------------------------------------------------- what callers see --

--- The exact dispatch_approve call that answers a pending request.
function M.answer_call(job_id, request_id, verdict)
  return "dispatch_approve(job_id=\"" .. job_id .. "\", request_id=\"" .. request_id ..
    "\", decision=\"" .. (verdict or "allow") .. "\")"
end

--- The hint of a job record whose agent waits for decisions: the call
--- that answers each pending request.
function M.pending_hint(rec)
  local calls = {}
  for _, e in ipairs(rec.permissions and rec.permissions.pending or {}) do
    calls[#calls + 1] = tostring(e.tool) .. ": " ..
      M.answer_call(rec.id, tostring(e.request_id), "allow") .. " (or decision=\"deny\")"
  end
  return "The agent waits for your decision on " .. #calls .. " permission request(s) " ..
    "(permissions.pending): " .. table.concat(calls, "; ") .. ". Then call dispatch_wait again."
end

--- Marks job record rec (as dispatch_wait / dispatch_status return it)
--- as waiting for the caller's decisions: awaiting_approval and the hint,
--- last in its key order. Returns rec.
function M.mark_awaiting(rec)
  rec.awaiting_approval = true
  rec.hint = M.pending_hint(rec)
  return json.append_keys(rec, "awaiting_approval", "hint")
end

--- What a sync call returns when its child waits for the caller's
--- decision: the job, the pending request, how to answer it.
function M.awaiting(rec, run, agent)
  local st = run.relay or {}
  local pr = st.asking or {}
  local entry = st.pending and st.pending[pr.request_id]
  local left = entry and math.max(0, math.floor(entry.expires_at - core.task.time())) or 0
  local pending = json.object({ request_id = pr.request_id, tool = pr.tool, input = pr.input,
    agent = pr.agent, description = pr.description },
    { "request_id", "tool", "input", "agent", "description" })
  return json.object({ status = "awaiting_approval", job_id = rec.id, agent = agent,
    pending = pending,
    answer = json.object({ tool = "dispatch_approve", arguments = json.object({
      job_id = rec.id, request_id = pr.request_id, decision = "allow" },
      { "job_id", "request_id", "decision" }) }, { "tool", "arguments" }),
    expires_in_seconds = left,
    progress = json.array(util.copy(run.tail or {})),
    hint = "The agent asks to use " .. tostring(pr.tool) .. " and waits for your decision. " ..
      "Allow: " .. M.answer_call(rec.id, tostring(pr.request_id), "allow") .. "; deny: " ..
      M.answer_call(rec.id, tostring(pr.request_id), "deny") .. " (message= tells the agent " ..
      "why; updated_input= allows it with an input you edited). Unanswered, it is denied " ..
      "in " .. left .. " s. Then dispatch_wait(job_id=\"" .. rec.id .. "\") gets the answer " ..
      "(it returns early, with awaiting_approval, when another request waits)." },
    { "status", "job_id", "agent", "pending", "answer", "expires_in_seconds", "progress", "hint" })
end

require("ad.domain.steer").handlers.approve = M.on_approve

return M
