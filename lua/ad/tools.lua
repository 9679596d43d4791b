--- The tool registry: definitions, input schemas, argument validation and
--- the guards every tool body runs under.
---
--- A tool is {name, title?, description, params = {{name, type, required?,
--- default?, description?, minimum?, maximum?}...}, annotations?,
--- guard = "config"|"io", handler = fn(args, ctx)}. The handler returns a
--- Lua value that becomes the tool's one JSON text; it never needs to
--- raise: a load error of agents.yaml and filesystem errors are turned into
--- {"error", "hint"} envelopes here, so "tools never raise" holds even when
--- a handler has a bug (that becomes an internal-error envelope, logged
--- with its traceback on stderr).
local core = require "ad.core"
local json = require "ad.infra.json"
local util = require "ad.infra.util"
local config = util.lazy "ad.storage.config"
local render = util.lazy "ad.infra.errors.render"
local type, next, ipairs = type, next, ipairs
local jobs = util.lazy "ad.storage.jobs"

local M = {}

local registry, order = {}, {}

--- Registers a tool; a later definition with the same name replaces it.
function M.define(def)
  assert(type(def.name) == "string" and def.name:match("^[%w_.-]+$"), "bad tool name")
  assert(type(def.handler) == "function", "tool " .. def.name .. " needs a handler")
  if not registry[def.name] then order[#order + 1] = def.name end
  registry[def.name] = def
  return def
end

-- An event while load_builtin runs: loading tool files waits (each file
-- runs as a task under a time budget), and a request handled meanwhile
-- must not see a partial registry (a client caches its first tools/list).
local loading

local function settled()
  if loading and not loading:is_set() and core.task.in_task() then loading:wait() end
end

function M.get(name)
  settled()
  return registry[name]
end

function M.names()
  settled()
  local out = {}
  for i, n in ipairs(order) do out[i] = n end
  return out
end

local TYPE_NAMES = { string = "string", integer = "integer", number = "number",
                     boolean = "boolean" }

--- The JSON type of a param in the input schema: "schema" params (a JSON
--- Schema) take an object or its JSON text.
local function schema_type(p)
  if p.type == "schema" then return json.array{ "object", "string" } end
  return TYPE_NAMES[p.type]
end

--- The MCP Tool object for a definition (version-aware: 2024-11-05 gets
--- no title or annotations).
function M.describe(def, version)
  local props, required = {}, json.array()
  local porder = {}
  for _, p in ipairs(def.params or {}) do
    local s = { type = schema_type(p) }
    if p.description then s.description = p.description end
    if p.default ~= nil then s.default = p.default end
    if p.minimum then s.minimum = p.minimum end
    if p.maximum then s.maximum = p.maximum end
    props[p.name] = json.object(s, { "type", "description", "default", "minimum", "maximum" })
    porder[#porder + 1] = p.name
    if p.required then required[#required + 1] = p.name end
  end
  local schema = json.object({ type = "object",
    properties = json.object(props, porder), required = required },
    { "type", "properties", "required" })
  if #porder == 0 then
    schema = json.object({ type = "object", properties = json.object({}, {}),
                           additionalProperties = false },
                         { "type", "properties", "additionalProperties" })
  end
  local t = json.object({ name = def.name, description = def.description,
                          inputSchema = schema },
                        { "name", "title", "description", "inputSchema", "annotations" })
  if version ~= "2024-11-05" then
    t.title = def.title
    if def.annotations then t.annotations = def.annotations end
  end
  return t
end

local function coerce(p, v)
  local tv = type(v)
  if p.type == "string" then
    if tv == "string" then return v end
  elseif p.type == "integer" then
    if math.type(v) == "integer" then return v end
    if tv == "number" and v == math.floor(v) then return math.tointeger(v) end
    if tv == "string" and util.strip(v):match("^[-+]?%d+$") then
      return math.tointeger(tonumber(util.strip(v)))
    end
  elseif p.type == "number" then
    if tv == "number" then return v end
    if tv == "string" and tonumber(util.strip(v)) then return tonumber(util.strip(v)) end
  elseif p.type == "boolean" then
    if tv == "boolean" then return v end
  elseif p.type == "schema" then
    if tv == "string" or (tv == "table" and not (next(v) ~= nil and json.is_array(v))) then
      return v
    end
  end
  return nil
end

--- Validates arguments against the schema; returns args (with defaults) or
--- nil, message. The first problem in the order of def.params is the one
--- reported (checked by validate_all); arguments without one (every call
--- but a refused one) take a shorter way (see fast).
local function validate_all(def, raw)
  local args = {}
  for _, p in ipairs(def.params or {}) do
    local v = raw[p.name]
    if v == nil or v == json.null then
      if p.required then
        return nil, "Invalid arguments for " .. def.name .. ": '" .. p.name .. "' is required"
      end
      args[p.name] = p.default
    else
      local c = coerce(p, v)
      if c == nil then
        local want = p.type == "integer" and "an integer"
          or p.type == "schema" and "a JSON Schema object or its JSON text" or "a " .. p.type
        return nil, "Invalid arguments for " .. def.name .. ": '" .. p.name ..
          "' must be " .. want .. ", got " .. json.describe(v)
      end
      if type(c) == "string" and c:find("\0", 1, true) then
        -- Every value ends up in a C string (argv, a file name, YAML):
        -- a NUL would silently cut it there.
        return nil, "Invalid arguments for " .. def.name .. ": '" .. p.name ..
          "' must not contain NUL characters"
      end
      args[p.name] = c
    end
  end
  return args
end

-- fast(def, raw): validate_all's result for arguments it accepts, or nil
-- when something needs its message (then validate_all says what). It is
-- compiled per definition at its first call (a definition is never
-- changed once defined: a later one replaces it): one straight function
-- whose param names are constants (each quoted by %q, no environment),
-- each param one local, the arguments table made by one constructor at
-- its final size. A string given for a string param is taken as it is
-- (no coercion call), only its NUL check. A definition with a param name
-- that is not a string, or with more params than a function has locals,
-- gets the full check only.
local fasts = setmetatable({}, { __mode = "k" })

local MAX_FAST_PARAMS = 150

local function compile(def)
  local params = def.params or {}
  if #params > MAX_FAST_PARAMS then return false end
  local defaults = {}
  local src = { "local D, null, type, find, coerce, P, nul_free = ...\nreturn function(raw)\n" }
  local function add(fmt, ...) src[#src + 1] = string.format(fmt, ...) end
  for i, p in ipairs(params) do
    if type(p.name) ~= "string" then return false end
    defaults[i] = p.default
    add("local a%d = raw[%q]\nif a%d == nil or a%d == null then ", i, p.name, i, i)
    if p.required and p.default == nil then add("return nil\n") else add("a%d = D[%d]\n", i, i) end
    -- (a string without NUL, taken as it is; any other value, one with a
    -- NUL included, goes through coerce and the check below)
    if p.type == "string" then add("elseif nul_free(a%d) then\n", i) end
    add("else a%d = coerce(P[%d], a%d) if a%d == nil or (type(a%d) == 'string' and " ..
      "find(a%d, '\\0', 1, true)) then return nil end end\n", i, i, i, i, i, i)
  end
  src[#src + 1] = "return {"
  for i, p in ipairs(params) do add("[%q] = a%d,", p.name, i) end
  src[#src + 1] = "}\nend\n"
  return load(table.concat(src), "=args", "t", {})(defaults, json.null, type, string.find,
    coerce, params, core.text.nul_free)
end

local function fast(def, raw)
  local f = fasts[def]
  if f == nil then
    f = compile(def)
    fasts[def] = f
  end
  if not f then return nil end
  return f(raw)
end

function M.validate(def, raw)
  local args = fast(def, raw)
  if args then return args end
  return validate_all(def, raw)
end

function M.envelope(msg, hint)
  return json.object({ error = msg, hint = hint }, { "error", "hint" })
end

--- Turns a config save error into the tool's envelope (wording from
--- ad.infra.errors.render, like every other surface).
function M.save_error(tool, err)
  local msg, remedy = render.save(err)
  if not msg then return M.load_error(err) end
  return M.envelope(tool .. " " .. msg, remedy)
end

function M.load_error(err)
  local _, _, hint = render.load(err)
  return M.envelope((render.load_line(err):gsub("^%l", string.upper)), hint)
end

--- The user's override file (path:line when known) an error message
--- points into, or nil: an error there is the user's to fix, not a bug.
function M.override_file(msg)
  local dir = core.embed.user_lua_dir()
  if not dir or dir == "" or type(msg) ~= "string" then return nil end
  local at = msg:find(dir .. "/", 1, true)
  if not at then return nil end
  return msg:sub(at):match("^[^:]+%.lua:%d+") or msg:sub(at):match("^[^:]+%.lua")
end

function M.override_hint(file)
  return "The error is in your override " .. file .. " (user Lua directory " ..
    core.embed.user_lua_dir() .. "): fix it, or remove it to use the shipped module; " ..
    "`agent-dispatch lua list` shows where each module comes from."
end

-- Unknown config keys reach the client's log too (stderr has them as
-- well), once per version of the file: the cached config of an unchanged
-- file is the same table.
local logged_unknown = setmetatable({}, { __mode = "k" })

function M.log_unknown_keys(cfg, ctx)
  if logged_unknown[cfg] or not cfg.unknown_keys or #cfg.unknown_keys == 0 then return end
  logged_unknown[cfg] = true
  if not ctx.log then return end
  for _, u in ipairs(cfg.unknown_keys) do
    ctx.log("warning", config.path() .. ": " .. config.unknown_key_message(u))
  end
end

-- The message handler of a tool body (one function, not one per call).
local function traceback(e)
  if type(e) == "table" then return e end
  return debug.traceback(tostring(e), 2)
end

--- Runs a tool call; returns the result value (never raises, except the
--- cancellation error, which the caller turns into "no response").
function M.call(def, args, ctx)
  if def.guard == "config" then
    local cfg, err = config.load()
    if not cfg then return M.load_error(err) end
    ctx.cfg = cfg
    jobs.share_limit(cfg.settings.max_concurrency)
    M.log_unknown_keys(cfg, ctx)
  end
  local ok, res = xpcall(def.handler, traceback, args, ctx)
  if ok then return res end
  -- Lua says only "not enough memory" (without calling the handler above):
  -- name the budget that refused the allocation.
  if res == "not enough memory" then res = core.task.memory_refused() or res end
  if type(res) == "table" and res.type == "cancelled" then error(res, 0) end
  if type(res) == "table" and res.type == "io" then
    local msg, hint = render.io(res)
    return M.envelope(def.name .. " failed on I/O: " .. msg, hint)
  end
  io.stderr:write("agent-dispatch: tool ", def.name, " failed: ", tostring(res), "\n")
  local first = tostring(type(res) == "table" and res.message or res):match("^[^\n]*")
  local file = M.override_file(first)
  if file then
    return M.envelope(def.name .. " failed: " .. first, M.override_hint(file))
  end
  if def.custom then
    return M.envelope(def.name .. " failed: " .. first,
      "The error is in the custom tool file " .. def.custom ..
      "; the server log (stderr) has the traceback.")
  end
  return M.envelope(def.name .. " failed with an internal error: " .. first,
    "This is a bug in agent-dispatch; the server log (stderr) has the traceback.")
end

--- Is this tool result a failure the model should see as isError?
function M.is_error_result(v)
  if type(v) ~= "table" or json.is_array(v) then return false end
  if v.success == false then return true end
  return v.error ~= nil and v.success == nil and v.agent == nil
end

M.BUILTIN = { "list_agents", "inspect_agent", "list_groups", "inspect_group",
  "dispatch", "dispatch_session", "dispatch_parallel", "dispatch_stream",
  "dispatch_dialogue", "add_agent", "remove_agent", "update_agent",
  "dispatch_async", "dispatch_status", "dispatch_wait", "dispatch_cancel",
  "dispatch_steer", "dispatch_approve", "dispatch_jobs", "fetch_result", "dispatch_gc",
  "dispatch_trace", "cache_stats", "cache_clear", "live_stats" }

M.load_errors = {}

--- Loads the built-in tool modules (in tools/list order), then the user's
--- tool files. A module that fails to load (a broken override in the
--- user's Lua directory) never takes the server down, and is never hidden:
--- its tools stay listed and every call answers with the load error.
local load_all

function M.load_builtin()
  loading = core.task.event()
  local ok, err = pcall(load_all)
  loading:set(true)
  -- Whatever went wrong is reported, never raised: this runs in the task
  -- that reads requests, and the built-in tools are registered by now.
  if not ok then
    if type(err) == "table" and err.type == "cancelled" then error(err, 0) end
    io.stderr:write("agent-dispatch: loading tool files failed: ",
      tostring(type(err) == "table" and err.message or err), "\n")
  end
end

load_all = function()
  for _, mod in ipairs({ "ad.tools.agents", "ad.tools.dispatch", "ad.tools.manage",
                         "ad.tools.jobs", "ad.tools.steer", "ad.tools.trace", "ad.tools.cache",
                         "ad.tools.relay", "ad.tools.live" }) do
    local ok, err = pcall(require, mod)
    if not ok then
      M.load_errors[#M.load_errors + 1] = tostring(err)
      io.stderr:write("agent-dispatch: cannot load ", mod, ": ", tostring(err), "\n")
    end
  end
  local builtin = {}
  for i, name in ipairs(M.BUILTIN) do
    builtin[name] = true
    if not registry[name] then
      local msg = M.load_errors[#M.load_errors] or "unknown error"
      M.define{ name = name, params = {},
        description = "Unavailable: agent-dispatch could not load its Lua policy.",
        handler = function()
          return M.envelope("agent-dispatch could not load this tool: " .. msg,
            "Fix or remove the override in your Lua directory (agent-dispatch lua list " ..
            "shows where each module comes from).")
        end }
    end
    -- keep tools/list in the documented order even after a fallback
    for j, n in ipairs(order) do
      if n == name and j ~= i then table.remove(order, j); table.insert(order, i, name) break end
    end
  end
  require("ad.domain.plugins").load(M.define, builtin)
end

return M
