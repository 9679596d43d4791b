--- The agent_dispatch module: the API that `agent-dispatch run` scripts
--- (and custom tools) use. The same functions the MCP tools use, not a
--- second implementation. Functions that dispatch wait for their child
--- without blocking other tasks, so ad.spawn'ed work runs concurrently.
---
---   local ad = require "agent_dispatch"
---   local r = ad.dispatch{agent = "backend", task = "List the API routes"}
---   if r.success then print(r.result) end
local core = require "ad.core"
local json = require "ad.infra.json"
local config = require "ad.storage.config"
local render = require "ad.infra.errors.render"
local D = require "ad.domain.dispatch"
local request = require "ad.domain.request"
local task = require "ad.infra.task"
local errors = require "ad.infra.errors"
local util = require "ad.infra.util"

local M = {}

M.version = core.version
M.args = {}
M.null = json.null

local function cfg()
  local c, e = config.load()
  if not c then
    error(render.load_line(e), 3)
  end
  require("ad.storage.jobs").share_limit(c.settings.max_concurrency)
  return c
end

local function log_hook(level, msg)
  if os.getenv("AGENT_DISPATCH_VERBOSE") then
    io.stderr:write("[", level, "] ", msg, "\n")
  end
end

--- Writes its arguments to stderr as one line (tostring'ed, space-joined).
function M.log(...)
  local parts = {}
  for i = 1, select("#", ...) do parts[i] = tostring((select(i, ...))) end
  io.stderr:write(table.concat(parts, " "), "\n")
end

--- The loaded configuration: {agents = {name = entry}, agent_names = {...},
--- groups = {...}, group_names = {...}, settings = {...}, path = ...}.
function M.config()
  local c, e = config.load(nil, true) -- a private copy the script may change
  if not c then
    error(render.load_line(e), 2)
  end
  return c
end

--- Agent names in config order, each with directory, description and health.
function M.agents()
  local c = cfg()
  require("ad.domain.introspect").prefetch(c)
  local out = {}
  for i, name in ipairs(c.agent_names) do
    local a = c.agents[name]
    out[i] = { name = name, directory = a.directory, host = a.host, description = a.description,
               healthy = require("ad.domain.introspect").source(a, c.settings).health() }
  end
  return out
end

local OPTIONAL_STRINGS = { "session_id", "context", "caller", "goal", "group", "response_format" }

-- The keys of a dispatch spec (docs/lua-api.md): a misspelt one (timeout,
-- contxt) would otherwise be dropped without a word and the dispatch run
-- without it.
local SPEC_KEYS = { "agent", "task", "context", "caller", "goal", "response_format",
  "response_schema", "timeout_seconds", "group", "tree_budget_usd", "session_id" }
-- What people write for a spec key, when no edit distance finds it.
local SPEC_ALIASES = { timeout = "timeout_seconds", session = "session_id",
  schema = "response_schema", format = "response_format", budget = "tree_budget_usd" }
local SPEC_SET = {}
for _, k in ipairs(SPEC_KEYS) do SPEC_SET[k] = true end

-- Raises for key k, which what (names: the keys it takes) does not take,
-- with the key it most likely meant; at prefixes the message; level as the
-- caller's caller would give error().
local function unknown_key(k, names, at, what, level)
  local near = type(k) == "string" and (SPEC_ALIASES[k] or require("ad.infra.suggest").closest(k, names))
  error(at .. "unknown key " .. util.repr(type(k) == "string" and k or tostring(k)) ..
    (near and (" (did you mean '" .. near .. "'?)") or "") ..
    "; " .. what .. " takes " .. table.concat(names, ", "), level + 2)
end

-- Raises for a key of spec that is neither a spec key nor on_progress (with
-- progress: ad.stream); level is what the caller would give error().
local function known_keys(spec, level, progress, at)
  for k in pairs(spec) do
    if not (SPEC_SET[k] or (progress and k == "on_progress")) then
      local names = util.copy(SPEC_KEYS)
      if progress then names[#names + 1] = "on_progress" end
      unknown_key(k, names, at or "", "a dispatch spec", level)
    end
  end
end

-- A job id argument (wait, cancel), or an error at the caller's line.
local function job_id(id, level)
  if type(id) ~= "string" or not require("ad.storage.jobs").valid(id) then
    error("invalid job id " .. util.repr(tostring(id)) .. " (expected 32 hex characters)", level + 1)
  end
  return id
end

-- Called in tail position by M.dispatch/session/stream, so level 2 is the
-- caller of those (the script's line).
local function one(spec, extra)
  if type(spec) ~= "table" then error("expected a table {agent=..., task=...}", 2) end
  known_keys(spec, 2, extra ~= nil)
  if type(spec.agent) ~= "string" or type(spec.task) ~= "string" then
    error("agent and task must be strings", 2)
  end
  for _, k in ipairs(OPTIONAL_STRINGS) do
    if spec[k] ~= nil and type(spec[k]) ~= "string" then
      error(k .. " must be a string, got " .. type(spec[k]), 2)
    end
  end
  local p = util.copy(spec)
  for k, v in pairs(extra or {}) do p[k] = v end
  local r, err = D.one(cfg(), p, { log = log_hook })
  if not r then error(err, 2) end
  return r
end

--- One dispatch; returns the DispatchResult table the dispatch tool returns.
--- spec: agent, task, context, caller, goal, response_format,
--- response_schema (a JSON Schema as a Lua table or JSON text: the answer
--- comes back as structured_output), timeout_seconds, group.
function M.dispatch(spec) return one(spec) end

--- A session turn: like dispatch, plus session_id to resume.
function M.session(spec) return one(spec) end

--- A streamed dispatch: spec.on_progress(line) is called for each progress
--- line as it happens.
function M.stream(spec)
  if type(spec) == "table" and spec.on_progress ~= nil and type(spec.on_progress) ~= "function" then
    error("on_progress must be a function, got " .. type(spec.on_progress), 2)
  end
  return one(spec, { stream = true, on_progress = type(spec) == "table" and spec.on_progress or nil })
end

--- Parallel fan-out: list of dispatch specs (+ list.aggregate = agent).
--- Returns a list of results, or {individual_results=, aggregated=}.
function M.parallel(list)
  if type(list) ~= "table" then error("parallel: expected a list of dispatch specs", 2) end
  for k in pairs(list) do
    if math.type(k) ~= "integer" and k ~= "aggregate" and k ~= "tree_budget_usd" then
      unknown_key(k, { "aggregate", "tree_budget_usd" }, "parallel: ", "the list of dispatch specs", 1)
    end
  end
  for i, item in ipairs(list) do
    if type(item) == "table" then known_keys(item, 2, false, "parallel: item " .. i .. ": ") end
  end
  local c = cfg()
  local items, err = D.parallel_items(c, json.array(util.copy(list)), list.aggregate)
  local tree_budget, berr = request.tree_budget(list.tree_budget_usd)
  if not items or berr then error(err or berr, 2) end
  return D.parallel(c, items, list.aggregate, { log = log_hook, tree_budget_usd = tree_budget })
end

--- Two-agent dialogue: {requester=, responder=, topic=, max_rounds=}.
function M.dialogue(spec)
  if type(spec) ~= "table" then
    error("dialogue: expected a table {requester=, responder=, topic=, max_rounds=}", 2)
  end
  local r, err = D.dialogue(cfg(), spec, { log = log_hook })
  if not r then error(err, 2) end
  return r
end

--- Starts a background job (like the dispatch_async tool); returns its id.
--- spec: agent, task, context, caller, goal, response_format,
--- response_schema, timeout_seconds, group. With settings.jobs_outlive_server (the default)
--- it runs in a detached job runner and outlives the script; otherwise on
--- this process's loop, stopped and marked failed if the script ends first.
function M.async(spec)
  if type(spec) ~= "table" then error("expected a table {agent=..., task=...}", 2) end
  known_keys(spec, 2)
  local req, err = request.build(cfg(), spec)
  if not req then error(err, 2) end
  return require("ad.domain.async").submit(req).id
end

--- Waits for a job (at most timeout seconds, default 3600); returns its
--- record, and true as a second value when the wait timed out.
function M.wait(id, timeout)
  job_id(id, 2)
  local rec, timed_out = require("ad.domain.async").wait(id, timeout or 3600)
  if not rec then error("Job not found: " .. tostring(id), 2) end
  return rec, timed_out == true
end

--- Cancels a job; returns {job_id, outcome, status, message}.
function M.cancel(id)
  job_id(id, 2)
  local r = require("ad.domain.async").cancel(id)
  if not r then error("Job not found: " .. tostring(id), 2) end
  return r
end

--- Job records, newest first: {status = "running", limit = 20}.
function M.jobs(opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("jobs: expected a table {status =, limit =}", 2) end
  local jobs = require "ad.storage.jobs"
  local st = opts.status
  if st ~= nil and not (st == "pending" or st == "running" or jobs.TERMINAL[st]) then
    error("jobs: status must be one of pending, running, done, failed, cancelled; got " ..
      util.repr(tostring(st)), 2)
  end
  if opts.limit ~= nil and not (math.type(opts.limit) == "integer" and opts.limit >= 1) then
    error("jobs: limit must be at least 1; got " .. tostring(opts.limit), 2)
  end
  return jobs.list(st, opts.limit or 50)
end

--- The full result stored under a ref or job id (nil when none yet).
function M.fetch(ref)
  local rec = require("ad.storage.jobs").get(ref)
  return rec and rec.result
end

--- Concurrency helpers: run fn as a task; wait for all of a list of
--- functions (results in order, as {ok=, value=}); sleep in seconds.
M.spawn = core.task.spawn
function M.all(fns, ...)
  local okl = type(fns) == "table"
  for _, f in ipairs(okl and fns or {}) do okl = okl and type(f) == "function" end
  if not okl then error("all: expected a list of functions", 2) end
  return task.all(fns, ...)
end
-- (core.task.sleep answers a cancellation with nil; a script's sleep
-- raises it, so a stopped script - --timeout, Ctrl-C, t:cancel() - stops
-- there instead of going on to start more work)
function M.sleep(seconds)
  if core.task.sleep(seconds) == nil then error(errors.new("cancelled", "cancelled"), 0) end
  return true
end
M.now = core.task.now

--- JSON helpers (lua-cjson underneath).
M.json = { encode = json.encode, array = json.array,
  decode = function(text)
    if type(text) ~= "string" then return nil, "expected a string, got " .. type(text) end
    return json.decode_shaped(text) -- ([] stays [] when encoded again)
  end }

return M
