--- The permission relay for 2026-07-28 clients (MCP.md 3.6, MRTR): a
--- tools/call whose request declared form elicitation and whose child
--- asks the caller for a permission (ad.domain.relay) is answered with an
--- InputRequiredResult instead of status "awaiting_approval":
---
---   {"resultType":"input_required",
---    "inputRequests":{"permission-<request id>":{"method":"elicitation/create",
---      "params":{"mode":"form","message":...,"requestedSchema":...}}},
---    "requestState":"<hex payload>.<hex HMAC-SHA256>"}
---
--- while the child goes on waiting as a job (the hand-off of
--- ad.domain.handoff). The client retries the same call with a new id,
--- inputResponses and the requestState: the state is verified (its MAC,
--- expiry, and the digest of the tool name and arguments it was made
--- for), each answer is delivered as dispatch_approve delivers it
--- (ad.domain.approve, recorded with by "elicitation"), and the retry goes
--- on as the call: it returns the job's result, another
--- InputRequiredResult when the child asks again, or the hand-off answer
--- when the job still runs after handoff_after_seconds.
---
--- requestState is attacker-controlled: it is authenticated with a
--- per-user 32-byte key (request_state.key in the private jobs directory,
--- 0600, created on first use under a lock), so any later server of the
--- same user can verify it, and nothing is delivered unless it verifies.
local core = require "ad.core"
local json = require "ad.infra.json"
local util = require "ad.infra.util"

local M = {}

M.KEY_FILE = "request_state.key"
M.VERSION = 1
-- Expiry of a state whose requests carry none (they always do today).
M.DEFAULT_TTL = 3600
local MAC_CONTEXT = "agent-dispatch requestState v1\n"

--- The marker of a value that is an InputRequiredResult, not a tool result.
M.INPUT_REQUIRED = setmetatable({}, { __name = "mcp_mrtr.INPUT_REQUIRED" })

local function hex(s)
  return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

local function unhex(s)
  if type(s) ~= "string" or #s % 2 ~= 0 or s:find("[^0-9a-f]") then return nil end
  return (s:gsub("..", function(h) return string.char(tonumber(h, 16)) end))
end

--- Did a 2026-07-28 request's clientCapabilities declare form elicitation
--- (`elicitation: {}` means form; `{form: {...}}` says so)?
function M.declared(caps)
  local e = type(caps) == "table" and caps.elicitation
  if type(e) ~= "table" or (next(e) ~= nil and json.is_array(e)) then return false end
  return next(e) == nil or type(e.form) == "table"
end

-- ------------------------------------------------------------- the key --

local cached_key

local function key_error(msg)
  error(require("ad.infra.errors").new("io", "requestState key: " .. msg), 0)
end

-- The key at path, or nil when there is none; raises when the file is not
-- one to trust (a link, another owner, readable by others, malformed).
-- Modes are checked from the bits: root passes every permission check.
local function read_key(path)
  local kind, _, mode, uid = core.fs.stat(path)
  if not kind then return nil end
  if kind ~= "file" then key_error(path .. " is not a regular file") end
  if uid ~= core.sys.getuid() then
    key_error(path .. " is owned by uid " .. uid .. ", not by you (uid " .. core.sys.getuid() .. ")")
  end
  if mode & 63 ~= 0 then -- 0077
    key_error(string.format("%s is open to group or others (mode %o); remove it, a new " ..
      "one is made (states handed out with the old key stop verifying)", path, mode & 511))
  end
  local text, err = core.fs.read_file(path, 4096, true)
  if not text then key_error("cannot read " .. path .. ": " .. tostring(err)) end
  local key = unhex(util.strip(text))
  if not key or #key ~= 32 then key_error(path .. " does not hold a 64-digit hex key") end
  return key
end

--- The per-user key (made on first use). Raises an "io" error.
function M.key()
  if cached_key then return cached_key end
  local jobs = require "ad.storage.jobs"
  local dir = jobs.ensure_dir()
  local path = dir .. "/" .. M.KEY_FILE
  local key = read_key(path)
  if not key then
    -- Two servers starting at once must not make two keys: the second
    -- finds the first one's under the lock.
    local lock, lerr = core.fs.lock(path .. ".lock", 5)
    if not lock then key_error("cannot lock " .. path .. ": " .. tostring(lerr)) end
    local ok, res = pcall(function()
      local k = read_key(path)
      if k then return k end
      k = core.crypto.random(32)
      local wok, werr = core.fs.write_atomic(path, hex(k) .. "\n", 384, true) -- 0600
      if not wok then key_error("cannot write " .. path .. ": " .. tostring(werr)) end
      return k
    end)
    lock:unlock()
    if not ok then error(res, 0) end
    key = res
  end
  cached_key = key
  return key
end

-- ----------------------------------------------------------- the state --

-- A canonical text of a decoded JSON value (object keys sorted), so the
-- digest of a call's arguments does not depend on how the client ordered
-- or spaced them.
local function canonical(v, out)
  if type(v) ~= "table" then
    out[#out + 1] = json.encode(v)
  elseif next(v) ~= nil and json.is_array(v) then
    out[#out + 1] = "["
    for i, x in ipairs(v) do
      if i > 1 then out[#out + 1] = "," end
      canonical(x, out)
    end
    out[#out + 1] = "]"
  else
    local keys = {}
    for k in pairs(v) do keys[#keys + 1] = tostring(k) end
    table.sort(keys)
    out[#out + 1] = "{"
    for i, k in ipairs(keys) do
      if i > 1 then out[#out + 1] = "," end
      out[#out + 1] = json.encode(k) .. ":"
      canonical(v[k], out)
    end
    out[#out + 1] = "}"
  end
  return out
end

--- The digest of a call (tool name and arguments) a state is bound to.
function M.digest(tool, args)
  local text = json.encode(tostring(tool)) .. "\n" ..
    table.concat(canonical(args or json.object({}, {}), {}))
  return hex(core.crypto.sha256(text))
end

local function mac(payload)
  return hex(core.crypto.hmac_sha256(M.key(), MAC_CONTEXT .. payload))
end

--- The requestState of fields {job, keys = {key -> request id}, order,
--- exp, args}.
function M.seal(f)
  local keys = json.object({}, f.order)
  for _, k in ipairs(f.order) do keys[k] = f.keys[k] end
  local payload = json.encode(json.object({ v = M.VERSION, job = f.job, keys = keys,
    exp = f.exp, args = f.args }, { "v", "job", "keys", "exp", "args" }))
  return hex(payload) .. "." .. mac(payload)
end

--- The fields of a requestState that verifies for the call (tool, args),
--- or nil and what is wrong with it (a message for the client).
function M.open(state, tool, args)
  if type(state) ~= "string" or #state > 65536 then
    return nil, "requestState must be the string a previous input_required result gave"
  end
  local phex, given = state:match("^(%x+)%.(%x+)$")
  local payload = phex and unhex(phex)
  if not payload then return nil, "requestState is malformed" end
  if not core.crypto.equal(mac(payload), given) then
    return nil, "requestState failed its integrity check (altered, or not made by this " ..
      "user's agent-dispatch)"
  end
  local f = json.decode(payload)
  if type(f) ~= "table" or f.v ~= M.VERSION or type(f.job) ~= "string"
      or type(f.keys) ~= "table" or type(f.exp) ~= "number" then
    return nil, "requestState is malformed"
  end
  if core.task.time() > f.exp then
    return nil, "requestState expired at " .. os.date("!%Y-%m-%dT%H:%M:%SZ", math.floor(f.exp)) ..
      " (its permission requests have timed out); call the tool again"
  end
  if f.args ~= M.digest(tool, args) then
    return nil, "requestState was made for another call (the tool name or arguments differ " ..
      "from the call it belongs to); retry that call unchanged"
  end
  return f
end

-- ------------------------------------------------- input_required out --

local function key_of(request_id, taken)
  local k = "permission-" .. tostring(request_id):gsub("[^%w%-_.]", "_")
  local base, n = k, 1
  while taken[k] do n = n + 1; k = base .. "-" .. n end
  taken[k] = true
  return k
end

--- The elicitation/create request of a pending permission request (the
--- form of ad.domain.relay, with mode "form").
function M.elicitation(e)
  local params = require("ad.domain.relay").elicit_params({ request_id = e.request_id,
    tool = e.tool, input = e.input, agent = e.agent, description = e.description })
  params.mode = "form"
  return json.object({ method = "elicitation/create", params = params }, { "method", "params" })
end

-- The pending requests of job rec (its record), else of the fallback list.
local function pending_of(rec, fallback)
  local p = rec and type(rec.permissions) == "table" and rec.permissions.pending
  if type(p) == "table" and #p > 0 then return p end
  return fallback or {}
end

--- The InputRequiredResult asking the client about job_id's pending
--- requests (its record's, else fallback: {request_id, tool, input,
--- agent, description}), bound to the call (tool, args). Returns it with
--- the M.INPUT_REQUIRED marker, or nil when there is nothing to ask.
function M.input_required(job_id, tool, args, fallback)
  local rec = require("ad.storage.jobs").get(job_id)
  local pending = pending_of(rec, fallback)
  if #pending == 0 then return nil end
  local requests, keys, order, taken = json.object({}, {}), {}, {}, {}
  local exp = 0
  for _, e in ipairs(pending) do
    local k = key_of(e.request_id, taken)
    order[#order + 1], keys[k] = k, tostring(e.request_id)
    requests[k] = M.elicitation(e)
    exp = math.max(exp, tonumber(e.expires_at) or 0)
  end
  getmetatable(requests).__order = order
  if exp <= 0 then exp = core.task.time() + M.DEFAULT_TTL end
  local state = M.seal({ job = job_id, keys = keys, order = order, exp = exp,
    args = M.digest(tool, args) })
  return setmetatable({ result = json.object({ resultType = "input_required",
    inputRequests = requests, requestState = state },
    { "resultType", "inputRequests", "requestState", "_meta" }) }, M.INPUT_REQUIRED)
end

--- The MRTR form of a tool's value, for a call whose request declared
--- elicitation (call = {tool, args}): the marker's result, or an
--- InputRequiredResult for a value with status "awaiting_approval". nil:
--- the value goes out as a tool result (a state that cannot be made - the
--- key file refused - leaves the awaiting_approval answer, which says how
--- else to answer).
function M.render(value, call)
  if getmetatable(value) == M.INPUT_REQUIRED then return value.result end
  if not call or type(value) ~= "table" or value.status ~= "awaiting_approval"
      or type(value.job_id) ~= "string" then
    return nil
  end
  local fallback = type(value.pending) == "table" and { value.pending } or nil
  local ok, ir = pcall(M.input_required, value.job_id, call.tool, call.args, fallback)
  if not ok then
    io.stderr:write("agent-dispatch: input_required: ", tostring(type(ir) == "table"
      and ir.message or ir), "; answering with awaiting_approval\n")
    return nil
  end
  return ir and ir.result
end

-- ------------------------------------------------------- the retry in --

--- The decision an ElicitResult carries: verdict, message; or nil, why.
function M.verdict_of(r)
  if type(r) ~= "table" or json.is_array(r) and next(r) ~= nil then
    return nil, "must be an elicitation result object {action, content}"
  end
  local content = r.content
  if content ~= nil and (type(content) ~= "table" or json.is_array(content) and next(content) ~= nil) then
    return nil, "content must be an object"
  end
  content = content or {}
  local note = type(content.message) == "string" and util.nonempty(util.strip(content.message)) or nil
  if r.action == "accept" then
    if content.decision == "allow" then return "allow", note end
    if content.decision == "deny" then return "deny", note or "The caller denied it." end
    return nil, "an accepted answer needs content.decision \"allow\" or \"deny\""
  elseif r.action == "decline" or r.action == "cancel" then
    return "deny", note or ("The caller " .. (r.action == "decline" and "declined" or "dismissed") ..
      " the permission request.")
  end
  return nil, "action must be \"accept\", \"decline\" or \"cancel\""
end

local function decided(rec, request_id)
  local p = type(rec.permissions) == "table" and rec.permissions or {}
  for _, d in ipairs(type(p.decisions) == "table" and p.decisions or {}) do
    if type(d) == "table" and d.request_id == request_id then return true end
  end
  return false
end

--- Delivers answers {request_id, verdict, message} to job_id as
--- dispatch_approve does; requests decided meanwhile (CLI approve, a
--- timeout) are skipped.
function M.deliver(job_id, answers, log)
  local jobs = require "ad.storage.jobs"
  local approve = require "ad.domain.approve"
  for _, a in ipairs(answers) do
    local rec = jobs.get(job_id)
    if not rec or jobs.TERMINAL[rec.status] then return end
    if not decided(rec, a.request_id) then
      local r, err = approve.post(job_id, a.request_id, a.verdict,
        { message = a.message, by = "elicitation" })
      if r then
        log("info", "Permission " .. a.verdict .. " (elicitation) for request " ..
          a.request_id .. " of job " .. job_id)
      else
        log("warning", "Permission answer for request " .. a.request_id .. " of job " ..
          job_id .. " not delivered: " .. tostring(err))
      end
    end
  end
end

-- The hand-off answer of a retry whose job still runs.
local function still_running(rec, after)
  local dispatch = require "ad.domain.dispatch"
  local kept = type(rec.process) == "table" and rec.process.keeper ~= nil
  return json.object({ status = "running", job_id = rec.id, agent = rec.agent,
    running_seconds = after, progress = json.array(util.copy(rec.progress or {})),
    hint = dispatch.handoff_hint(rec.id, after, kept) },
    { "status", "job_id", "agent", "running_seconds", "progress", "hint" })
end

-- What an ended job gives its call: its result (call.ref: as the ref
-- payload a direct call with return_ref gives, the job being the stored
-- result), or an error envelope.
local function ended(rec, call)
  if type(rec.result) == "table" and call.ref then
    return require("ad.domain.async").ref_payload(rec, rec.result, call.ref)
  end
  if type(rec.result) == "table" then return rec.result end
  local tools = require "ad.tools"
  return tools.envelope("Job " .. rec.id .. " " .. tostring(rec.status) ..
    (rec.error and (": " .. tostring(rec.error)) or "") .. ".",
    "dispatch_status(job_id=\"" .. rec.id .. "\") shows its record.")
end

-- The seconds a retry waits before it answers with the hand-off: the
-- call's handoff_after_seconds, else the setting (0: until the job ends).
local function wait_bound(args)
  local cfg = require("ad.storage.config").load()
  if not cfg then return 0 end
  local after = require("ad.domain.request").handoff_after(args.handoff_after_seconds,
    cfg.settings)
  return tonumber(after) or 0
end

--- What a job gives a retry after at most `after` seconds (0: no bound):
--- its result, an InputRequiredResult (call declared elicitation) or the
--- awaiting_approval answer when it waits for a decision, or the hand-off.
--- call = {tool, args, ref}: ref, the summary_chars of a call that asked
--- for return_ref.
function M.follow(job_id, call, after, elicits)
  local async = require "ad.domain.async"
  local start = core.task.now()
  while true do
    local left = after > 0 and math.max(0, after - (core.task.now() - start)) or 3600
    local rec, timed_out, asking = async.wait(job_id, math.max(left, 0.01), { awaiting = true })
    if not rec then
      return require("ad.tools").envelope("Job " .. job_id .. " no longer exists.")
    end
    if asking then
      if elicits then
        local ir = M.input_required(job_id, call.tool, call.args)
        if ir then return ir end
      end
      return require("ad.domain.relay").mark_awaiting(rec)
    end
    if require("ad.storage.jobs").TERMINAL[rec.status] then return ended(rec, call) end
    if core.task.cancelled() then
      -- The retry goes on as the call: cancelled, it cancels the call's
      -- work (its client has no job id to come back to; nothing answers).
      pcall(async.cancel, job_id)
      return ended(rec, call)
    end
    if timed_out and after > 0 then return still_running(rec, after) end
  end
end

--- A tools/call retry (params carry requestState and inputResponses),
--- checked before anything runs: returns the call's continuation
--- function(def, vargs, ctx) -> value, or nil, code, message (the
--- JSON-RPC error; nothing was delivered).
function M.retry(params, caps)
  local tool, args = params.name, params.arguments or json.object({}, {})
  if params.requestState == nil then
    return nil, -32602, "Invalid params: inputResponses come with the requestState of the " ..
      "input_required result they answer"
  end
  local ok, f, why = pcall(M.open, params.requestState, tool, args)
  if not ok then
    return nil, -32603, "Internal error: cannot check requestState: " ..
      tostring(type(f) == "table" and f.message or f)
  end
  if not f then return nil, -32602, "Invalid params: " .. why end
  local responses = params.inputResponses
  if responses == nil then responses = {} end
  if type(responses) ~= "table" or (next(responses) ~= nil and json.is_array(responses)) then
    return nil, -32602, "Invalid params: inputResponses must be an object keyed like inputRequests"
  end
  local answers = {}
  local keys = {}
  for k in pairs(responses) do keys[#keys + 1] = k end
  table.sort(keys)
  for _, k in ipairs(keys) do
    local rid = f.keys[k]
    if type(rid) ~= "string" then
      return nil, -32602, "Invalid params: inputResponses." .. k .. " answers nothing this " ..
        "requestState asked"
    end
    local verdict, msg = M.verdict_of(responses[k])
    if not verdict then return nil, -32602, "Invalid params: inputResponses." .. k .. ": " .. msg end
    answers[#answers + 1] = { request_id = rid, verdict = verdict, message = msg }
  end
  local rec = require("ad.storage.jobs").get(f.job)
  if not rec then
    return nil, -32602, "Invalid params: requestState names job " .. f.job ..
      ", which no longer exists"
  end
  local elicits = M.declared(caps)
  return function(_, vargs, ctx)
    M.deliver(f.job, answers, ctx.log)
    -- The call's own answer form: a dispatch with return_ref gets the ref.
    local ref = vargs.return_ref == true and (vargs.summary_chars or require("ad.infra.limits").SUMMARY_CHARS) or nil
    return M.follow(f.job, { tool = tool, args = args, ref = ref }, wait_bound(vargs), elicits)
  end
end

return M
