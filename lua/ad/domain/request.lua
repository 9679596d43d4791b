--- The request: one object from every entry point to the child's command
--- line, built here and nowhere else. Every route (dispatch,
--- dispatch_session, dispatch_stream, parallel items, the aggregator,
--- dialogue turns, dispatch_async, MCP tasks, the `run` API, CLI `test`)
--- calls build() and hands the result to ad.domain.runner.
---
--- Fields of a request (explicit names; "agent" alone is never used):
---   agent_name       the agent's name (as configured)
---   agent            its config entry (directory, model, permissions...)
---   settings         the config's settings
---   task, context, caller, goal, response_format, session_id
---                    strings, or nil (an empty string means absent);
---                    context has the group's shared context folded in
---   group            the group the dispatch runs as a member of, or nil
---   response_schema  JSON Schema text (an object) the answer must match,
---                    passed as --json-schema; or nil
---   timeout          one-off timeout override in seconds, or nil (the
---                    agent's own)
---   stream           true: stream-json, progress lines to on_progress
---   use_cache        true: an identical clean success may be answered
---                    from the cache (never with session_id)
---   on_progress(line), log(level, msg)              observers, optional
---   on_slot() -> false, on_spawn(pid) -> false      async job gates
---   handoff_after    seconds after which a sync MCP tool call that is
---                    still running is handed off to a job (ad.domain.
---                    dispatch), or nil (never: scripts, the CLI, jobs,
---                    MCP tasks)
---   on_started()     called once the child runs (its span's start record)
---   on_pid(pid)      the child's pid once it runs (not held at a gate)
---   on_span(span)    called with its span before it runs (a sync call that
---                    may be handed off to a job)
---   trace            the trace context it runs in (ad.domain.trace), or
---                    nil: a new tree (or the one this process inherited)
---   span_kind        the kind of its span ("item", "turn", "async"...),
---                    or nil: by the request (dispatch, session, stream)
---   span_id, span_start, job_id   a span started already (async jobs)
---   tree_budget_usd  the tree's spend cap given with the call, or nil
--- Room is left for what later work adds to a request (a transport mode):
--- add a field here, read it in the runner.
local util = require "ad.infra.util"
local json = require "ad.infra.json"
local groups = require "ad.domain.groups"
local limits = require "ad.infra.limits"
local type = type
local new_table = require("ad.core").table.new

local M = {}

M.MIN_TIMEOUT, M.MAX_TIMEOUT = limits.MIN_TIMEOUT, limits.MAX_TIMEOUT

--- The strings of a request as callers give them.
M.STRINGS = { "agent", "task", "context", "caller", "goal",
  "response_format", "group", "session_id" }

--- The largest response_schema accepted, in bytes of JSON text: it is one
--- command-line argument (Linux caps one at 128 KiB).
M.MAX_SCHEMA_BYTES = 65536

-- JSON Schema keywords whose value is a list, and those whose value is a
-- map of names to schemas. A decoded object cannot tell an empty [] from
-- an empty {}: an empty value under a list keyword is a list again.
local SCHEMA_LISTS = { required = true, enum = true, allOf = true, anyOf = true,
  oneOf = true, prefixItems = true, type = true, examples = true }
local SCHEMA_MAPS = { properties = true, patternProperties = true, ["$defs"] = true,
  definitions = true, dependentSchemas = true }

local function schema_copy(v, depth)
  if type(v) ~= "table" then return v end
  if depth > 64 then error("nested more than 64 levels deep", 0) end
  local out = setmetatable({}, getmetatable(v))
  for k, x in pairs(v) do
    if type(x) == "table" and next(x) == nil and getmetatable(x) == nil then
      x = SCHEMA_LISTS[k] and json.array() or x
    elseif SCHEMA_MAPS[k] and type(x) == "table" then
      local m = {}
      for name, sub in pairs(x) do m[name] = schema_copy(sub, depth + 1) end
      x = m
    else
      x = schema_copy(x, depth + 1)
    end
    out[k] = x
  end
  return out
end

--- response_schema as the CLI gets it: the JSON text of a JSON Schema
--- object. v is the object (decoded JSON) or its JSON text; nil, null and
--- "" mean none. Text is passed on as written (trimmed); an object is
--- encoded. Returns text, or nil (none), or nil, message.
function M.response_schema(v)
  if v == nil or v == json.null or v == "" then return nil end
  local text
  if type(v) == "string" then
    text = util.strip(v)
    if #text > M.MAX_SCHEMA_BYTES then
      return nil, "response_schema is too large (" .. #text .. " bytes; at most " ..
        M.MAX_SCHEMA_BYTES .. ")"
    end
    local obj, err = json.decode(text)
    if obj == nil and err then
      return nil, "response_schema is not valid JSON: " .. err
    end
    -- "[]" and "{}" decode alike: the text says which it was.
    if type(obj) == "table" and text:sub(1, 1) ~= "{" then v = json.array(obj) else v = obj end
  end
  if type(v) ~= "table" or json.is_array(v) then
    return nil, "response_schema must be a JSON Schema object (or its JSON text), got " ..
      json.describe(v)
  end
  if not text then
    local ok, res = pcall(function() return json.encode(schema_copy(v, 0)) end)
    if not ok then return nil, "response_schema is " .. tostring(res) end
    text = res
    if #text > M.MAX_SCHEMA_BYTES then
      return nil, "response_schema is too large (" .. #text .. " bytes as JSON; at most " ..
        M.MAX_SCHEMA_BYTES .. ")"
    end
  end
  if text:find("\0", 1, true) then return nil, M.nul_error("response_schema") end
  return text
end

--- F25: a one-off timeout override in seconds, or nil (keep the agent's).
--- nil, null, 0 and negative values keep the agent's; others are clamped
--- to [MIN_TIMEOUT, MAX_TIMEOUT] (ad.infra.limits). A numeric string counts as
--- its number. Returns nil, message for anything else.
function M.timeout_override(v)
  if v == nil or v == json.null then return nil end
  local n = v
  if type(v) == "string" then n = tonumber(util.strip(v)) end
  if type(n) ~= "number" or n ~= n then
    return nil, "timeout_seconds must be a number, got " .. json.describe(v)
  end
  if n <= 0 then return nil end
  -- (a whole number stays an integer: JSON's 10 decodes as 10.0, which
  -- every message would then print as "10.0s")
  local c = math.max(M.MIN_TIMEOUT, math.min(M.MAX_TIMEOUT, n))
  return math.tointeger(c) or c
end

--- The hand-off deadline of a sync tool call: v (the call's
--- handoff_after_seconds; nil or null: settings.handoff_after_seconds),
--- 0 = never (nil). A numeric string counts as its number; more than
--- limits.MAX_HANDOFF is clamped. Returns nil, message for anything else
--- (a negative value, not a number).
function M.handoff_after(v, settings)
  if v == nil or v == json.null then v = settings.handoff_after_seconds end
  local n = v
  if type(v) == "string" then n = tonumber(util.strip(v)) end
  if type(n) ~= "number" or n ~= n then
    return nil, "handoff_after_seconds must be a number, got " .. json.describe(v)
  end
  if n < 0 then
    return nil, "handoff_after_seconds must be 0 (never) or a number of seconds, got " ..
      json.describe(v)
  end
  if n == 0 then return nil end
  return math.min(n, limits.MAX_HANDOFF)
end

--- A tree spend cap as given with a call: a positive number, or nil (nil,
--- null and 0: none given); nil, message for anything else.
function M.tree_budget(v)
  if v == nil or v == json.null then return nil end
  if type(v) ~= "number" or not (v >= 0) or v == math.huge then
    return nil, "tree_budget_usd must be a number >= 0, got " .. json.describe(v)
  end
  return v > 0 and v or nil
end

function M.unknown_agent(cfg, name)
  return "Unknown agent: " .. util.repr(name) .. ". Available: " ..
    (#cfg.agent_names > 0 and table.concat(cfg.agent_names, ", ") or "(none configured)")
end

--- The first of keys whose value in t is a string holding a NUL character,
--- or nil. A NUL would silently cut the value where it becomes a C string
--- (the claude command line), so every route refuses it up front.
function M.nul_field(t, keys)
  for _, k in ipairs(keys) do
    local v = t[k]
    if type(v) == "string" and v:find("\0", 1, true) then return k end
  end
  return nil
end

function M.nul_error(field)
  return "Invalid arguments: '" .. field .. "' must not contain NUL characters"
end

--- Builds a request from what a caller gives: agent (a name), task,
--- context, caller, goal, response_format, response_schema (see
--- M.response_schema), group, session_id, timeout_seconds (clamped, see timeout_override) or timeout (seconds,
--- taken as given: the CLI's own --timeout), stream, use_cache,
--- on_progress, log, on_slot, on_spawn, and handoff (true: a sync MCP
--- tool call; handoff_after_seconds then gives its deadline, see
--- handoff_after). Returns the request, or nil and a message (NUL
--- characters, an unknown agent or group, a bad timeout, a bad
--- response_schema).
---
--- opts.composed: the texts were composed by us from earlier answers
--- (aggregation, dialogue turns), whose names were checked already, so a
--- NUL an agent wrote in its answer is passed on, not refused.
--- opts.checked: f holds a tool's arguments as ad.tools.validate returned
--- them (every string checked for NUL there already).
--- opts.call: f is a caller's table, read only; what the call adds comes
--- in opts instead (log, elicit, handoff, use_cache, span_kind): no copy
--- of f per dispatch.
---@return table|nil req, string|nil message
function M.build(cfg, f, opts)
  if not (opts and (opts.composed or opts.checked)) then
    local nul = M.nul_field(f, M.STRINGS)
    if nul then return nil, M.nul_error(nul) end
  end
  local name = f.agent
  local agent = cfg.agents[name]
  if not agent then return nil, M.unknown_agent(cfg, name) end
  -- (claude would start and fail on it: "Input must be provided")
  if type(f.task) ~= "string" or not f.task:find("%S") then
    return nil, "task is empty: say what the agent should do"
  end
  local log, elicit, handoff, use_cache, span_kind =
    f.log, f.elicit, f.handoff, f.use_cache, f.span_kind
  if opts and opts.call then
    log, elicit, handoff = opts.log, opts.elicit, opts.handoff
    use_cache, span_kind = use_cache or opts.use_cache, span_kind or opts.span_kind
  end
  local timeout, terr = f.timeout, nil
  if timeout == nil then
    local v = f.timeout_seconds
    if v ~= nil and v ~= 0 then -- (0: the agent's own, the tools' default)
      timeout, terr = M.timeout_override(v)
      if terr then return nil, terr end
    end
  elseif not (timeout > 0) then
    timeout = nil
  end
  local schema
  if f.response_schema ~= nil then
    local serr
    schema, serr = M.response_schema(f.response_schema)
    if serr then return nil, serr end
  end
  local handoff_after
  if handoff then
    local herr
    handoff_after, herr = M.handoff_after(f.handoff_after_seconds, cfg.settings)
    if herr then return nil, herr end
  end
  local tree_budget
  if f.tree_budget_usd ~= nil then
    local berr
    tree_budget, berr = M.tree_budget(f.tree_budget_usd)
    if berr then return nil, berr end
  end
  -- (empty strings mean absent, as util.nonempty: inline, per field)
  local group, context, caller, goal = f.group, f.context, f.caller, f.goal
  local response_format, session_id = f.response_format, f.session_id
  if group == "" then group = nil end
  if context == "" then context = nil end
  if caller == "" then caller = nil end
  if goal == "" then goal = nil end
  if response_format == "" then response_format = nil end
  if session_id == "" then session_id = nil end
  if group then
    local err = groups.check(cfg, group, name)
    if err then return nil, err end
    context = util.nonempty(groups.fold(cfg, group, context))
  end
  -- The request's fields: agent_name, agent, settings, task, context,
  -- caller, goal, response_format, response_schema, group, session_id,
  -- timeout, stream, use_cache, on_progress, log, on_slot, on_spawn,
  -- elicit, handoff_after, trace, span_kind, span_id, span_start, job_id,
  -- tree_budget_usd. Made at the size a constructor of them all would
  -- make (what the dispatch adds later fits), the absent ones not
  -- written: most are, and a nil in a constructor costs as much as a
  -- field.
  local req = new_table(28)
  req.agent_name, req.agent, req.settings, req.task = name, agent, cfg.settings, f.task
  req.stream, req.use_cache = f.stream == true, use_cache == true
  if context ~= nil then req.context = context end
  if caller ~= nil then req.caller = caller end
  if goal ~= nil then req.goal = goal end
  if response_format ~= nil then req.response_format = response_format end
  if schema ~= nil then req.response_schema = schema end
  if group ~= nil then req.group = group end
  if session_id ~= nil then req.session_id = session_id end
  if timeout ~= nil then req.timeout = timeout end
  if log ~= nil then req.log = log end
  if elicit ~= nil then req.elicit = elicit end
  if handoff_after ~= nil then req.handoff_after = handoff_after end
  if span_kind ~= nil then req.span_kind = span_kind end
  if tree_budget ~= nil then req.tree_budget_usd = tree_budget end
  local v = f.on_progress
  if v ~= nil then req.on_progress = v end
  v = f.on_slot
  if v ~= nil then req.on_slot = v end
  v = f.on_spawn
  if v ~= nil then req.on_spawn = v end
  v = f.trace
  if v ~= nil then req.trace = v end
  v = f.span_id
  if v ~= nil then req.span_id = v end
  v = f.span_start
  if v ~= nil then req.span_start = v end
  v = f.job_id
  if v ~= nil then req.job_id = v end
  M.with_relay(req)
  return req
end

--- An agent with permissions.relay: its child asks over its control
--- channel (req.relay) and ad.domain.relay answers (req.on_control_request,
--- bound to this request; a copy that changes what the relay reads, such
--- as ad.domain.async.observe, binds it again).
function M.with_relay(req)
  local perms = req.agent.permissions
  if not (perms and perms.relay == true) then return req end
  local relay = require "ad.domain.relay"
  req.relay = true
  -- Shared by the copies of the request: the decisions of this dispatch
  -- (a result that depended on them is not cached).
  req.relay_log = req.relay_log or {}
  req.on_control_request = relay.handler(req)
  return req
end

--- What user hooks see of a request (before_dispatch may change task,
--- context, caller and goal; after_result receives it with the result).
function M.view(req)
  return { agent = req.agent_name, task = req.task, context = req.context,
    caller = req.caller, goal = req.goal, response_format = req.response_format,
    group = req.group, session_id = req.session_id }
end

--- The request as a before_dispatch hook left its view: a copy with the
--- hook's task, context, caller and goal.
function M.with_view(req, view)
  local r = util.copy(req)
  r.task, r.context = view.task, util.nonempty(view.context)
  r.caller, r.goal = util.nonempty(view.caller), util.nonempty(view.goal)
  return r
end

--- The agent's settings merged over the defaults: timeout, budget (a
--- positive cap, or nil), permission_mode, allowed, disallowed.
function M.effective(req)
  local agent, settings = req.agent, req.settings
  local timeout = req.timeout
  if not timeout then
    timeout = agent.timeout
    if not timeout or timeout == 0 then timeout = settings.default_timeout end
  end
  local b = agent.max_budget_usd
  if not b or b == 0 then b = settings.default_max_budget_usd end
  local budget = (b and b > 0) and b or nil
  -- Within a tree spend cap: never more than what the tree has left.
  local left = req.tree_left
  local by_tree = left ~= nil and (budget == nil or left < budget)
  if left then budget = budget and math.min(budget, left) or left end
  local pm = agent.permission_mode
  if pm == nil or pm == "" then pm = settings.default_permission_mode end
  if pm == "" then pm = nil end
  local allowed, disallowed = agent.allowed_tools, agent.disallowed_tools
  if not allowed then allowed = settings.default_allowed_tools end
  if not disallowed then disallowed = settings.default_disallowed_tools end
  -- (one constructor: the table is made at its final size)
  -- (by_tree: the tree's cap, not the agent's, set budget)
  return { timeout = timeout, budget = budget, permission_mode = pm, allowed = allowed,
           disallowed = disallowed, by_tree = by_tree }
end

return M
