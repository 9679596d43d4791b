--- The MCP server: JSON-RPC over stdio, speaking both protocol eras.
---
--- Legacy (2025-11-25 and older): an `initialize` handshake scoped to the
--- process, then requests under the negotiated version. Modern
--- (2026-07-28): every request carries its version and capabilities in
--- params._meta and is served statelessly; `server/discover` describes us.
--- Each tools/call runs as its own task, so a long dispatch never delays
--- any other request; notifications/cancelled kills the call's child
--- process group and nothing more is written for that id. Jobs are
--- resources (ad.protocol.resources): list, read, and notifications to
--- subscribers of either era when a job changes status.
---
--- Over 500 lines: it is the one place where both protocol eras, their
--- routing and the serve loop meet; splitting them would scatter the id,
--- in-flight and cancellation rules they share. What only some requests
--- need lives beside it, loaded at its first use, so that a server
--- answers its handshake having loaded this module alone: a tools/call
--- (ad.protocol.mcp_call, with the requests to the client), resources
--- (ad.protocol.resources), tasks (ad.protocol.mcp_tasks, mcp_tasks_ext),
--- batches (ad.protocol.mcp_batch), and the upkeep beside answering
--- (ad.protocol.mcp_upkeep).
local core = require "ad.core"
local json = require "ad.infra.json"
local util = require "ad.infra.util"
local tools = util.lazy "ad.tools"
-- (locals: a request reaches these many times on its way to a call)
local type, next, setmetatable, tostring, pcall =
  type, next, setmetatable, tostring, pcall

local M = {}

M.NAME = "agent-dispatch"
M.MODERN = "2026-07-28"
M.LEGACY = { "2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05" }
M.SUPPORTED = { "2026-07-28", "2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05" }
-- Seconds between progress beats of a long call. The environment knob
-- exists so tests can observe beats without waiting minutes.
M.LEGACY_ONLY = os.getenv("AGENT_DISPATCH_MCP_ERA") == "legacy"
M.HEARTBEAT = tonumber(os.getenv("AGENT_DISPATCH_MCP_HEARTBEAT") or "") or 25

local META_VERSION = "io.modelcontextprotocol/protocolVersion"
local META_CAPS = "io.modelcontextprotocol/clientCapabilities"
local META_LEVEL = "io.modelcontextprotocol/logLevel"
M.META_LEVEL = META_LEVEL
local META_SERVER = "io.modelcontextprotocol/serverInfo"

local LEVELS = { debug = 0, info = 1, notice = 2, warning = 3, error = 4,
                 critical = 5, alert = 6, emergency = 7 }
M.LEVELS = LEVELS

M.INSTRUCTIONS = table.concat({
  "agent-dispatch delegates tasks to Claude Code agents that live in other",
  "project directories, each with its own CLAUDE.md, MCP servers, tools and",
  "files. Dispatch only when a task needs another project's context.",
  "Flow: list_agents -> inspect_agent -> dispatch (or dispatch_session for",
  "multi-turn work, dispatch_parallel to fan out and aggregate,",
  "dispatch_stream to watch progress, dispatch_dialogue to let two agents",
  "talk). Always pass caller= and goal=. Groups: list_groups /",
  "inspect_group, and group= on dispatch to give a member the group's",
  "shared context. Timeouts: pass timeout_seconds= for a longer one-off run;",
  "a timed-out run returns a session_id that dispatch_session can resume.",
  "Permissions: a result with denied_tools and a hint may be incomplete;",
  "grant tools with update_agent. Long work: dispatch_async returns a job_id",
  "at once; dispatch_status / dispatch_wait / dispatch_cancel / dispatch_jobs",
  "follow it; dispatch_steer sends a running job's agent more guidance.",
  "Save context: return_ref=true stores a large result and returns",
  "a compact ref that fetch_result reads. Manage agents with add_agent,",
  "update_agent, remove_agent; cache_stats / cache_clear for the result cache.",
  "A result with status awaiting_approval: the agent asks to use a tool;",
  "answer with dispatch_approve, then dispatch_wait.",
}, " ")

local function versioned(v)
  for _, x in ipairs(M.LEGACY) do if x == v then return true end end
  return false
end

local Server = {}
Server.__index = Server

function M.new(write)
  return setmetatable({
    write = write,
    legacy_version = nil,   -- negotiated by initialize
    log_level = "info",     -- legacy era: info until logging/setLevel
    inflight = {},
    listens = {},
    broken = false,
  }, Server)
end

-- ------------------------------------------------ resources (jobs) --
-- (their requests and subscriptions: ad.protocol.resources, loaded at the
-- first one)

local function resources() return require "ad.protocol.resources" end

M.RESOURCE_METHODS = { ["resources/list"] = true, ["resources/templates/list"] = true,
  ["resources/read"] = true }


function Server:notify(method, params)
  self:send(json.object({ jsonrpc = "2.0", method = method, params = params },
                        { "jsonrpc", "method", "params" }))
end

function M.resources_capability()
  return json.object({ subscribe = true, listChanged = false }, { "subscribe", "listChanged" })
end

-- ------------------------------------------------------------ output --

-- stdout failed (EPIPE: the client's reader is gone): nothing is
-- written any more, and the serve loop is told at once (on_broken), not
-- at the next input line, which may never come.
local function broke(self)
  self.broken = true
  if self.on_broken then self.on_broken() end
end

function Server:send(msg)
  if self.broken then return end
  local ok = self.write(json.encode(msg) .. "\n")
  if not ok then broke(self) end
end

-- A message already encoded, its newline included.
function Server:send_line(text)
  if self.broken then return end
  if not self.write(text) then broke(self) end
end

local function id_value(id)
  if id == nil then return json.null end
  return id
end

-- The shapes of every reply (json.object's metatables, one each: a reply
-- makes no metatable or key list of its own).
local ERROR_MT = { __order = { "code", "message", "data" } }
local ERROR_REPLY_MT = { __order = { "jsonrpc", "id", "error" } }
local REPLY_MT = { __order = { "jsonrpc", "id", "result" } }
local META_MT = { __order = { META_SERVER } }
local INFO_MT = { __order = { "name", "version" } }

function Server:error(id, code, message, data)
  local err = setmetatable({ code = code, message = message, data = data }, ERROR_MT)
  self:send(setmetatable({ jsonrpc = "2.0", id = id_value(id), error = err }, ERROR_REPLY_MT))
end

function Server:result(id, result, modern)
  if modern then
    result.resultType = result.resultType or "complete"
    result._meta = setmetatable({ [META_SERVER] = M.server_info() }, META_MT)
  end
  self:send(setmetatable({ jsonrpc = "2.0", id = id, result = result }, REPLY_MT))
end

function M.server_info()
  return setmetatable({ name = M.NAME, version = core.version }, INFO_MT)
end

-- -------------------------------------------------------------- ids --

--- The id as it must be echoed (strings as they are; numbers digit for
--- digit from the raw line), its in-flight key, or nil when invalid.
local function read_id(id, line)
  if type(id) == "string" then
    -- A lone surrogate escape was decoded as U+FFFD: echo the id as it was
    -- written, or the client could not match the reply to its request.
    local raw = line and core.json.raw_member(line, "id")
    if raw and raw:sub(1, 1) == '"' and json.fix_surrogates(raw) then
      return json.raw(raw), "s:" .. id
    end
    return id, "s:" .. id
  end
  if type(id) == "number" then
    local raw = line and core.json.raw_member(line, "id")
    -- An integer token as JSON writes it (no leading zeros: "01" is not
    -- JSON, and echoing it would put invalid JSON on stdout).
    if raw and raw:match("^-?%d+$") and not raw:match("^-?0%d") then
      -- Up to 15 digits a double holds the integer exactly and %.17g
      -- writes it as its digits: the key is the text read (as
      -- request_key would make it, without the formatting).
      return json.raw(raw), "n:" .. (#raw <= 15 and raw or string.format("%.17g", id))
    end
    if not raw and math.tointeger(id) then -- batch elements: no raw text
      return math.tointeger(id), "n:" .. string.format("%.17g", id)
    end
  end
  return nil
end

local function request_key(v)
  if type(v) == "string" then return "s:" .. v end
  if type(v) == "number" then return "n:" .. string.format("%.17g", v) end
  return nil
end

-- ------------------------------------------------------------ tools --

--- Tool definitions are loaded on first need (tools/list, tools/call),
--- not before the handshake: Claude Code gives a server about 5 s to
--- connect and probes it first, so server/discover and initialize are
--- answered from this module alone.
local tools_ready = false
local function ensure_tools()
  if not tools_ready then
    tools_ready = true
    tools.load_builtin()
  end
end
M.ensure_tools = ensure_tools

--- The key of one tools/list shape: the protocol version, "+tasks" when
--- the tools carry their task support.
function M.tools_key(version, with_tasks)
  return version .. (with_tasks and "+tasks" or "")
end

--- The tools array for a protocol version, encoded from the registry.
function M.encode_tools(version, with_tasks)
  ensure_tools()
  local list = json.array()
  for _, name in ipairs(tools.names()) do
    local t = tools.describe(tools.get(name), version)
    if with_tasks and require("ad.protocol.mcp_tasks").TOOLS[name] then
      t.execution = json.object({ taskSupport = "optional" }, { "taskSupport" })
      table.insert(getmetatable(t).__order, "execution")
    end
    list[#list + 1] = t
  end
  return json.encode(list)
end

local encoded_lists = {}

--- The encoded tools array, the same every time (tools/list results must
--- not vary by connection or history): the one encoded at build time when
--- it is what the registry holds (then no tool module is loaded for it),
--- else encoded from the registry once.
function Server:tools_json(version, with_tasks)
  local key = M.tools_key(version, with_tasks)
  if not encoded_lists[key] then
    encoded_lists[key] = require("ad.tools.prebuilt").get(key)
      or M.encode_tools(version, with_tasks)
  end
  return json.raw(encoded_lists[key])
end

-- The per-call time budget stops user code that never yields: tool
-- files (their tools and hooks, and whatever they changed while loading),
-- overrides in the user Lua directory, a developer Lua directory. Its
-- count hook slows every VM instruction of the call, so it is set only
-- when such code can run; the shipped policy always yields or returns.
-- (Whether there is user code other than tool files is known at start:
-- the user Lua directory is looked at once, the environment is fixed.)
local plugins, user_code
local function set_call_budget()
  if user_code == nil then
    plugins = require "ad.domain.plugins"
    user_code = core.embed.user_lua_present()
      or (os.getenv("AGENT_DISPATCH_LUA_DIR") or "") ~= ""
  end
  if user_code or plugins.ran then
    core.task.set_budget(plugins.CALL_BUDGET)
  end
end

local TEXT_MT = { __order = { "type", "text" } }
local TEXT_RESULT_MT = { __order = { "content", "isError", "resultType", "_meta" } }

M.set_call_budget = set_call_budget

function M.text_result(text, is_error)
  return setmetatable({ content = json.array{ setmetatable({ type = "text", text = text },
    TEXT_MT) }, isError = is_error }, TEXT_RESULT_MT)
end

--- Runs tools/call in its own task. era: {modern=bool, version=, meta=}.
--- The progress token of the request being read (line: its raw text),
--- to echo: a number as written, digit for digit, when its double would
--- come out otherwise (10^14 and above, or a fraction); else token.
function M.token_text(token, line)
  if type(token) ~= "number" or not line or
      (math.tointeger(token) and math.abs(token) < 1e14) then
    return token
  end
  local raw = core.json.raw_member(line, "params")
  raw = raw and core.json.raw_member(raw, "_meta")
  raw = raw and core.json.raw_member(raw, "progressToken")
  if raw and raw:match("^%-?%d+%.?%d*[eE]?[-+]?%d*$") and not raw:match("^-?0%d") then
    return json.raw(raw)
  end
  return token
end

-- tools/call's arguments: absent, or an object. Returns the error message
-- of anything else (the caller answers -32602).
function M.arguments_error(args)
  if args ~= nil and (type(args) ~= "table" or (args[1] ~= nil and json.is_array(args))) then
    return "Invalid params: 'arguments' must be an object"
  end
end

function Server:call_tool(id, key, params, era)
  local name, args = params.name, params.arguments
  if type(name) ~= "string" then
    return self:error(id, -32602, "Invalid params: tools/call needs a string 'name'")
  end
  local bad = M.arguments_error(args)
  if bad then return self:error(id, -32602, bad) end
  ensure_tools()
  local def = tools.get(name)
  if not def then return self:error(id, -32602, "Unknown tool: " .. name) end
  if self.inflight[key] then
    return self:error(id, -32600, "Invalid Request: id " .. tostring(params and key:sub(3)) ..
      " is already in use by a request in flight")
  end
  -- (ad.protocol.mcp_call: loaded at the first call, not at start)
  require("ad.protocol.mcp_call").start(self, id, key, name, def, args, era)
end

-- ------------------------------------- requests to the client (legacy) --

--- Does a legacy client with capabilities caps accept form elicitation?
--- 2025-06-18: `elicitation: {}`; 2025-11-25: `form` declared, or an
--- empty `elicitation` (which means form).
function M.elicits_form(version, caps)
  local e = caps.elicitation
  if type(e) ~= "table" or json.is_array(e) and next(e) ~= nil then return false end
  if version == "2025-06-18" then return true end
  if version ~= "2025-11-25" then return false end
  return next(e) == nil or type(e.form) == "table"
end

function Server:cancel(request_id)
  local key = request_key(request_id)
  local entry = key and self.inflight[key]
  if not entry or entry.done then return end
  entry.cancelled = true
  self.inflight[key] = nil
  if entry.task then entry.task:cancel() end
  if entry.listen then
    self.listens[key] = nil
    if self.watch then self.watch:drop(key) end
  end
end

-- ------------------------------------------------------- dispatching --

function Server:notification(msg)
  local params = type(msg.params) == "table" and msg.params or {}
  if msg.method == "notifications/cancelled" then
    self:cancel(params.requestId)
  elseif msg.method == "notifications/initialized" then
    self.initialized_notified = true
  end
end

function Server:discover_result()
  local caps = json.object({ tools = json.object({ listChanged = false }, { "listChanged" }),
                             resources = M.resources_capability(),
                             logging = json.object({}, {}),
                             extensions = json.object({ ["io.modelcontextprotocol/tasks"] =
                               json.object({}, {}) }, { "io.modelcontextprotocol/tasks" }) },
                           { "tools", "resources", "logging", "extensions" })
  return json.object({ supportedVersions = json.array(util.copy(M.SUPPORTED)),
    capabilities = caps, instructions = M.INSTRUCTIONS, ttlMs = 0,
    cacheScope = "public" },
    { "resultType", "supportedVersions", "capabilities", "instructions",
      "ttlMs", "cacheScope", "_meta" })
end

local REMOVED_MODERN = { ping = true, ["logging/setLevel"] = true,
  ["resources/subscribe"] = true, ["resources/unsubscribe"] = true,
  ["tasks/result"] = true, ["tasks/list"] = true, initialize = true }

function Server:modern(id, key, msg, meta)
  local v = meta[META_VERSION]
  if type(v) ~= "string" then
    return self:error(id, -32602, "Invalid params: _meta." .. META_VERSION .. " must be a string")
  end
  if v ~= M.MODERN then
    return self:error(id, -32022, "Unsupported protocol version",
      json.object({ supported = json.array(util.copy(M.SUPPORTED)), requested = v },
                  { "supported", "requested" }))
  end
  local caps = meta[META_CAPS]
  if type(caps) ~= "table" or (next(caps) ~= nil and json.is_array(caps)) then
    return self:error(id, -32602, "Invalid params: _meta." .. META_CAPS .. " is required")
  end
  local lvl = meta[META_LEVEL]
  if lvl ~= nil and not LEVELS[lvl] then
    return self:error(id, -32602, "Invalid params: unknown log level " .. util.repr(tostring(lvl)))
  end
  local m = msg.method
  local params = type(msg.params) == "table" and msg.params or {}
  if m == "server/discover" then
    return self:result(id, self:discover_result(), true)
  elseif m == "tools/list" then
    if params.cursor ~= nil and params.cursor ~= "" then
      return self:error(id, -32602, "Invalid params: unknown cursor")
    end
    return self:result(id, json.object({ tools = self:tools_json(M.MODERN, false), ttlMs = 0,
      cacheScope = "public" }, { "resultType", "tools", "ttlMs", "cacheScope", "_meta" }), true)
  elseif m == "tools/call" then
    local era = { modern = true, version = M.MODERN, meta = meta,
      elicits = caps.elicitation ~= nil and require("ad.protocol.mcp_mrtr").declared(caps) }
    if caps.extensions ~= nil and params.requestState == nil
        and require("ad.protocol.mcp_tasks_ext").TOOLS[params.name]
        and require("ad.protocol.mcp_tasks_ext").declared(caps) then
      return require("ad.protocol.mcp_tasks_ext").call(self, id, key, params)
    end
    if params.requestState ~= nil or params.inputResponses ~= nil then
      -- An MRTR retry: checked here, so a bad state is a JSON-RPC error
      -- and nothing is delivered.
      local go, code, message = require("ad.protocol.mcp_mrtr").retry(params, caps)
      if not go then return self:error(id, code, message) end
      era.continue = go
    end
    return self:call_tool(id, key, params, era)
  elseif M.RESOURCE_METHODS[m] then
    return resources().request(self, id, m, params, true)
  elseif m == "subscriptions/listen" then
    return resources().listen(self, id, key, params)
  elseif m == "tasks/get" or m == "tasks/update" or m == "tasks/cancel" then
    -- The 2026 Tasks extension (ad.protocol.mcp_tasks_ext): a request
    -- that did not declare it gets the spec's missing-capability error.
    local ext = type(caps.extensions) == "table" and caps.extensions["io.modelcontextprotocol/tasks"]
    if not ext then
      return self:error(id, -32021, "Missing required client capability",
        json.object({ requiredCapabilities = json.object({ extensions = json.object({
          ["io.modelcontextprotocol/tasks"] = json.object({}, {}) },
          { "io.modelcontextprotocol/tasks" }) }, { "extensions" }) }, { "requiredCapabilities" }))
    end
    return require("ad.protocol.mcp_tasks_ext").method(self, id, key, m, params, caps)
  elseif REMOVED_MODERN[m] or m:match("^tasks/") then
    return self:error(id, -32601, "Method not found: " .. m .. " (not part of " .. M.MODERN .. ")")
  end
  return self:error(id, -32601, "Method not found: " .. m)
end

function Server:legacy(id, key, msg)
  local m = msg.method
  local params = type(msg.params) == "table" and msg.params or {}
  if m == "initialize" then
    if self.legacy_version then
      return self:error(id, -32600, "Invalid Request: already initialized (" ..
        self.legacy_version .. ")")
    end
    local asked = params.protocolVersion
    local v = versioned(asked) and asked or M.LEGACY[1]
    self.legacy_version = v
    local ccaps = type(params.capabilities) == "table" and params.capabilities or {}
    self.client_tasks = (v == "2025-11-25" and type(ccaps.tasks) == "table")
    self.client_elicits = M.elicits_form(v, ccaps)
    local caps = json.object({ tools = json.object({ listChanged = false }, { "listChanged" }),
                               resources = M.resources_capability(),
                               logging = json.object({}, {}) }, { "tools", "resources", "logging", "tasks" })
    if self.client_tasks then caps.tasks = require("ad.protocol.mcp_tasks").capabilities() end
    return self:result(id, json.object({ protocolVersion = v, capabilities = caps,
      serverInfo = M.server_info(), instructions = M.INSTRUCTIONS },
      { "protocolVersion", "capabilities", "serverInfo", "instructions" }))
  elseif m == "ping" then
    return self:result(id, json.object({}, {}))
  elseif m == "server/discover" and M.LEGACY_ONLY then
    return self:error(id, -32601, "Method not found: server/discover")
  elseif m == "server/discover" then
    return self:error(id, -32602, "Invalid params: server/discover needs _meta." .. META_VERSION)
  end
  if not self.legacy_version then
    return self:error(id, -32600, "Invalid Request: not initialized")
  end
  if m == "tools/list" then
    if params.cursor ~= nil then
      return self:error(id, -32602, "Invalid params: unknown cursor")
    end
    return self:result(id, json.object({ tools = self:tools_json(self.legacy_version,
                                                                self.client_tasks) }, { "tools" }))
  elseif m == "tools/call" and params.task ~= nil then
    return require("ad.protocol.mcp_tasks").call(self, id, key, params)
  elseif self.client_tasks and m:match("^tasks/") then
    return require("ad.protocol.mcp_tasks").method(self, id, key, m, params)
  elseif m == "tools/call" then
    return self:call_tool(id, key, params, { modern = false, version = self.legacy_version,
                                             meta = type(params._meta) == "table" and params._meta or nil })
  elseif M.RESOURCE_METHODS[m] or m == "resources/subscribe" or m == "resources/unsubscribe" then
    return resources().request(self, id, m, params, false)
  elseif m == "logging/setLevel" then
    if not LEVELS[params.level] then
      return self:error(id, -32602, "Invalid params: unknown log level " ..
        util.repr(tostring(params.level)))
    end
    self.log_level = params.level
    return self:result(id, json.object({}, {}))
  end
  return self:error(id, -32601, "Method not found: " .. m)
end

function Server:message(msg, line)
  -- (decoded JSON: an array has its first element, null included as
  -- json.null; an object has none, so most messages skip the full check)
  if type(msg) ~= "table" or (msg[1] ~= nil and json.is_array(msg)) then
    return self:error(nil, -32600, "Invalid Request: a message must be a JSON object")
  end
  if msg.method == nil and (msg.result ~= nil or msg.error ~= nil) then
    -- A response from the client: to one of our requests (elicitation),
    -- else ignored.
    local waiting = type(msg.id) == "string" and self.outgoing and self.outgoing[msg.id]
    if waiting then waiting:set(msg) end
    return
  end
  local has_id = msg.id ~= nil
  local id, key
  if has_id then id, key = read_id(msg.id, line) end
  if msg.jsonrpc ~= "2.0" or type(msg.method) ~= "string" then
    return self:error(id, -32600, "Invalid Request: jsonrpc must be \"2.0\" and method a string")
  end
  if not has_id then return self:notification(msg) end
  if not id then
    return self:error(nil, -32600, "Invalid Request: id must be a string or an integer")
  end
  if msg.params ~= nil then
    if type(msg.params) ~= "table" then
      return self:error(id, -32600, "Invalid Request: params must be an object")
    elseif (msg.params[1] ~= nil and json.is_array(msg.params)) or
        (next(msg.params) == nil and line and (core.json.raw_member(line, "params") or ""):sub(1, 1) == "[") then
      -- ([] and {} decode alike: an empty one is told apart by its text)
      return self:error(id, -32602, "Invalid params: params must be an object, not an array")
    end
  end
  local meta = type(msg.params) == "table" and msg.params._meta
  -- (a progress token past what a double keeps exactly as %.14g writes it
  -- is echoed as written, as ids are: M.token_text)
  self.line_now = line
  -- AGENT_DISPATCH_MCP_ERA=legacy: a legacy-only server, which reads the
  -- 2026 metadata as any other _meta (server/discover is then unknown,
  -- and the client falls back to the initialize handshake).
  local route = (type(meta) == "table" and meta[META_VERSION] ~= nil and not M.LEGACY_ONLY)
    and self.modern or self.legacy
  -- A request whose handling fails (a job store that cannot be read, a
  -- module that does not load at its first use) gets its own error: the
  -- reader must go on reading (MCP.md 1.3: exactly one response).
  local ok, err = pcall(route, self, id, key, msg, meta)
  if not ok then
    if type(err) == "table" and err.type == "cancelled" then error(err, 0) end
    local text = tostring(type(err) == "table" and err.message or err)
    io.stderr:write(os.date("!%Y-%m-%dT%H:%M:%SZ"), " ERROR agent-dispatch: ", tostring(msg.method),
      " failed: ", text, "\n")
    return self:error(id, -32603, "Internal error: " .. text:match("^[^\n]*"))
  end
end

--- Handles one input line (without its newline).
function Server:line(line)
  if not core.text.valid(line) then
    return self:error(nil, -32700, "Parse error: the line is not valid UTF-8")
  end
  if not line:find("%S") then return end
  local msg, err = json.decode(line)
  if msg == nil and err == nil then
    -- A literal `null` is valid JSON, just not a request (-32600, not -32700).
    return self:error(nil, -32600, "Invalid Request: a message must be a JSON object")
  elseif msg == nil then
    return self:error(nil, -32700, "Parse error: " .. tostring(err))
  end
  if type(msg) == "table" and msg[1] ~= nil and json.is_array(msg) then
    return self:batch(msg, line)
  end
  return self:message(msg, line)
end

function Server:batch(list, line)
  if self.legacy_version ~= "2025-03-26" then
    return self:error(nil, -32600, "Invalid Request: JSON-RPC batches are not supported " ..
      "in this protocol version")
  end
  -- (2025-03-26 only: loaded at the first batch, not at start)
  return require("ad.protocol.mcp_batch").run(self, list, Server.message)
end

--- Stops: cancels every in-flight call (their children's groups are
--- killed and reaped) and closes open subscriptions.
function Server:shutdown(grace)
  local waiting = {}
  for key, e in pairs(self.inflight) do
    if e.task and not e.done then
      e.cancelled = true
      e.task:cancel()
      waiting[#waiting + 1] = e.task
    end
    if e.listen and self.listens[key] then
      self:result(self.listens[key], json.object({ resultType = "complete",
        _meta = json.object({ ["io.modelcontextprotocol/subscriptionId"] = self.listens[key] },
                            { "io.modelcontextprotocol/subscriptionId" }) },
        { "resultType", "_meta" }))
    end
  end
  self.inflight = {}
  if self.watch then self.watch:stop() end
  local deadline = core.task.now() + (grace or 4)
  for _, t in ipairs(waiting) do
    while not t:done() and core.task.now() < deadline do core.task.sleep(0.05) end
  end
end

--- The server's stderr: complete lines go through core.chan.stderr_write, which
--- never blocks (a client that does not read stderr must not freeze the
--- server; lines that do not fit are dropped and counted). Every module
--- writes its log with io.stderr:write, so serve swaps in this stand-in.
local function log_stream()
  local partial = ""
  local f = {}
  function f:write(first, ...)
    -- One whole line (a call's log line): written as it is.
    if partial == "" and select("#", ...) == 0 and type(first) == "string"
        and first:byte(-1) == 10 then
      core.chan.stderr_write(first)
      return self
    end
    local text = partial .. table.concat({ first, ... })
    local nl = text:match(".*()\n") -- the last newline
    if nl then
      core.chan.stderr_write(text:sub(1, nl))
      partial = text:sub(nl + 1)
    elseif #text > 65536 then
      core.chan.stderr_write(text)
      partial = ""
    else
      partial = text
    end
    return self
  end
  function f:flush()
    if partial ~= "" then core.chan.stderr_write(partial); partial = "" end
    return self
  end
  function f:setvbuf() return true end
  return f
end

function M.serve()
  local real_stderr = io.stderr
  io.stderr = log_stream()
  local kick, upkept, stopping = core.task.event(), core.task.event(), false
  local server = M.new(function(text)
    local ok = core.chan.stdout_write(text)
    if not kick:is_set() then kick:set() end
    return ok
  end)
  local last_input = core.task.now()
  local upkeep = core.task.spawn(function()
    -- (after the first response, or half a second: ad.protocol.mcp_upkeep)
    local _, waited = kick:wait(0.5)
    local ok, err = true, nil
    if waited ~= "cancelled" then
      ok, err = pcall(function()
        require("ad.protocol.mcp_upkeep").maintenance(function() return stopping end,
                                                      function() return last_input end)
      end)
    end
    upkept:set()
    if not ok then error(err, 0) end
  end)
  local stop = core.task.event()
  server.on_broken = function() stop:set("stdout closed") end
  local reader = core.task.spawn(function()
    while true do
      local line, err = core.chan.stdin_read()
      last_input = core.task.now()
      if line == nil then
        if err ~= "cancelled" then stop:set("end of input") end
        return
      elseif line == false then
        server:error(nil, -32600, "Invalid Request: line longer than the 64 MiB limit " ..
          "was discarded")
      else
        server:line(line)
      end
      if server.broken then stop:set("stdout closed") return end
    end
  end)
  local watcher = core.task.spawn(function()
    local sig = core.signal.wait()
    if sig then stop:set(sig) end
  end)
  local why = stop:wait()
  io.stderr:write(os.date("!%Y-%m-%dT%H:%M:%SZ"), " INFO agent-dispatch: shutting down (",
                  tostring(why), ")\n")
  reader:cancel()
  watcher:cancel()
  -- Maintenance that has not run yet runs now (bounded: the jobs lock wait
  -- is the only thing it can wait for).
  stopping = true
  local relay = package.loaded["ad.domain.relay"]
  if relay then relay.server_stopping = true end
  kick:set()
  if not upkept:wait(3) then upkeep:cancel() end
  local async = package.loaded["ad.domain.async"] -- only if any job ever ran here
  if async and (why == "end of input" or why == "stdout closed") then
    server:shutdown() -- calls not handed off yet end as before
    why = require("ad.protocol.mcp_upkeep").supervise(async) or why
  end
  local workers = async and async.shutdown(why) or {}
  server:shutdown()
  -- Live session and warm pool processes: stdin closed, then their groups.
  local live = package.loaded["ad.domain.live"]
  if live then live.shutdown() end
  local deadline = core.task.now() + 3
  for _, w in ipairs(workers) do
    while not w.task:done() and core.task.now() < deadline do core.task.sleep(0.05) end
  end
  core.chan.stdout_drain(1)
  io.stderr:flush()
  io.stderr = real_stderr
  return 0
end

M.Server = Server
return M
