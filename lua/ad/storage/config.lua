--- agents.yaml: location, schema, validation, load and atomic save.
---
--- Load errors are one declared set of kinds shared by every surface (MCP
--- guard, CLI, doctor): "schema", "yaml", "utf8", "io". Save errors:
--- "write" (OS error; the previous file is intact, the write is atomic)
--- and "render" (the value cannot be written as YAML; also intact).
--- Every load -> mutate -> save runs under a cross-process lock on
--- <config>.lock with a bounded wait; nothing yields while it is held.
--- When the wait runs out the change fails ("lock"): nothing is ever
--- written without the lock.
---
--- Over 500 lines on purpose: the schema (parsing and validation), the
--- unknown-key report, and load/save under the lock are one contract over
--- agents.yaml; the key lists and error kinds they share are declared once,
--- here. Paths live in ad.storage.paths, byte-preserving edits in
--- ad.storage.config_edit.
local core = require "ad.core"
local util = require "ad.infra.util"
local json = require "ad.infra.json"
local config_edit = require "ad.storage.config_edit"
local paths = require "ad.storage.paths"
local suggest = require "ad.infra.suggest"
local remote = require "ad.domain.remote"

local M = {}

local AGENT_KEYS = { "directory", "host", "description", "timeout", "max_budget_usd",
  "model", "permission_mode", "allowed_tools", "disallowed_tools",
  "capabilities", "risky_capabilities", "permissions", "warm" }
local PERMISSIONS_KEYS = { "relay", "allow", "deny", "timeout_seconds" }
local GROUP_KEYS = { "description", "shared_context", "members" }
local MEMBER_KEYS = { "agent", "use_for" }
local TOP_KEYS = { "agents", "groups", "settings" }
local CACHE_KEYS = { "enabled", "ttl", "max_size", "max_bytes" }
local LIVE_KEYS = { "max", "idle_seconds" }
local SETTINGS_KEYS = { "default_timeout", "default_max_budget_usd",
  "default_permission_mode", "default_allowed_tools",
  "default_disallowed_tools", "max_dispatch_depth", "max_concurrency",
  "cache", "job_retention_days", "jobs_outlive_server", "handoff_after_seconds",
  "tree_budget_usd", "ssh_connect_timeout", "transport", "interrupt_grace_seconds",
  "live_sessions" }

-- Bounds of the processes kept alive between calls (ad.domain.live): each
-- idle claude process holds its memory (about 90-150 MB of RSS with the
-- 2.1.x CLI), so the counts are small and capped.
M.MAX_WARM = 8
M.MAX_LIVE_SESSIONS = 64

-- 64 MiB of cached results by default: an entry count alone does not
-- bound memory when results are large.
M.CACHE_MAX_BYTES = 64 * 1024 * 1024

function M.default_settings()
  return {
    default_timeout = 300,
    default_max_budget_usd = nil,
    default_permission_mode = nil,
    default_allowed_tools = json.array(),
    default_disallowed_tools = json.array(),
    max_dispatch_depth = 3,
    max_concurrency = 5,
    cache = { enabled = true, ttl = 300, max_size = 1000, max_bytes = M.CACHE_MAX_BYTES },
    job_retention_days = 0,
    jobs_outlive_server = true,
    handoff_after_seconds = 100,
    tree_budget_usd = nil,
    ssh_connect_timeout = 10,
    transport = "auto",
    interrupt_grace_seconds = 2,
    live_sessions = { max = 4, idle_seconds = 300 },
  }
end

M.config_dir = paths.config_dir
M.path = paths.config_path

function M.empty(path)
  return { path = path or M.path(), agents = {}, agent_names = {},
           groups = {}, group_names = {}, settings = M.default_settings() }
end

-- ---------------------------------------------------------------- schema --
--
-- Validation reports every problem of a file at once: a conversion that
-- fails records "where: what" in the current report and yields nil (the
-- field then takes its default), and from_document raises one error
-- listing them all.

local report -- the list problems go to while from_document runs

local function fail(where, msg)
  error({ schema = true, message = where .. ": " .. msg }, 0)
end

-- Runs conv(v, where); a schema failure is recorded and gives nil.
local function try(conv, v, where)
  local ok, r = pcall(conv, v, where)
  if ok then return r end
  if type(r) == "table" and r.schema and report then
    report[#report + 1] = r.message
    return nil
  end
  error(r, 0)
end

local function problem(where, msg)
  try(fail, where, msg)
end

-- A value as the error shows it: a list or a mapping by its kind (not
-- a Lua table's address).
local function shown(v)
  if type(v) == "table" then return json.is_array(v) and "a list" or "a mapping" end
  return util.repr(v)
end

-- A whole number that does not fit an integer (.inf, 1e20, twenty digits)
-- is refused, not read as absent.
local function as_int(v, where)
  if math.type(v) == "integer" then return v end
  local n
  if type(v) == "number" then
    n = math.tointeger(v)
  elseif type(v) == "boolean" then
    return v and 1 or 0
  elseif type(v) == "string" and util.strip(v):match("^[-+]?%d+$") then
    n = math.tointeger(tonumber(util.strip(v)))
    if not n then fail(where, "out of range: " .. util.repr(v)) end
  end
  if n then return n end
  if type(v) == "number" and v == math.floor(v) then
    fail(where, "out of range: " .. util.repr(v))
  end
  fail(where, "expected an integer, got " .. shown(v))
end

-- NaN and the infinities are refused: they would reach a command line or a
-- timer as nan/inf, and a NaN is not equal to itself, so a saved file
-- would not read back as the one loaded.
local function as_num(v, where)
  local n = v
  if type(v) == "string" then n = tonumber(util.strip(v)) end
  if type(n) ~= "number" then
    fail(where, "expected a number, got " .. shown(v))
  end
  if n ~= n or n == math.huge or n == -math.huge then
    fail(where, "expected a finite number, got " .. shown(v))
  end
  return type(v) == "string" and n + 0.0 or n
end

local function as_str(v, where)
  if type(v) == "string" then return v end
  fail(where, "expected a string, got " .. (type(v) == "table" and "a " ..
    (json.is_array(v) and "list" or "mapping") or util.repr(v)))
end

local function opt(v, conv, where)
  if v == nil or v == json.null then return nil end
  return try(conv, v, where)
end

local function str_list(v, where)
  if type(v) ~= "table" or (next(v) ~= nil and not json.is_array(v)) then
    fail(where, "expected a list of strings")
  end
  local out = json.array()
  for i, s in ipairs(v) do out[i] = as_str(s, where .. "[" .. (i - 1) .. "]") end
  return out
end

-- A mapping and its keys in file order; {} and {} (recorded) when v is
-- something else.
local function mapping(v, where)
  if v == nil or v == json.null then return {}, {} end
  if type(v) ~= "table" or (next(v) ~= nil and json.is_array(v)) then
    problem(where, "expected a mapping")
    return {}, {}
  end
  local mt = getmetatable(v)
  local order = {}
  local seen = {}
  if mt and mt.__order then
    for _, k in ipairs(mt.__order) do
      if v[k] ~= nil and not seen[k] then order[#order + 1] = k; seen[k] = true end
    end
  end
  local rest = {}
  for k in pairs(v) do if not seen[k] then rest[#rest + 1] = k end end
  table.sort(rest, function(a, b) return tostring(a) < tostring(b) end)
  for _, k in ipairs(rest) do order[#order + 1] = k end
  return v, order
end

local function check_name(name, where)
  if not core.text.valid_name(name) then
    problem(where, "Invalid agent name " .. util.repr(name) .. ": use letters, " ..
      "digits, '-' and '_', starting with a letter or digit")
    return false
  end
  return true
end

local function at_least(v, min, where)
  if v and v < min then problem(where, "must be >= " .. min) return nil end
  return v
end

-- agents.<name>.permissions: the permission relay's settings
-- (ad.domain.relay_policy), every pattern checked here.
local function parse_permissions(v, where)
  if v == nil or v == json.null then return nil end
  if type(v) ~= "table" or (next(v) ~= nil and json.is_array(v)) then
    problem(where, "expected a mapping with relay, allow, deny and timeout_seconds")
    return nil
  end
  local policy = require "ad.domain.relay_policy"
  local p = {}
  if v.relay ~= nil and v.relay ~= json.null then
    if type(v.relay) ~= "boolean" then
      problem(where .. ".relay", "expected true or false, got " .. shown(v.relay))
    else
      p.relay = v.relay
    end
  end
  for _, k in ipairs({ "allow", "deny" }) do
    local list = opt(v[k], str_list, where .. "." .. k)
    if list then
      for i, pat in ipairs(list) do
        local err = policy.problem(pat)
        if err then problem(where .. "." .. k .. "[" .. (i - 1) .. "]", err) end
      end
      p[k] = list
    end
  end
  local t = opt(v.timeout_seconds, as_int, where .. ".timeout_seconds")
  if t and (t < 1 or t > policy.MAX_TIMEOUT) then
    problem(where .. ".timeout_seconds", "must be between 1 and " .. policy.MAX_TIMEOUT ..
      " seconds, got " .. t)
    t = nil
  end
  p.timeout_seconds = t
  return json.object(p, PERMISSIONS_KEYS)
end

local function at_most(v, max, where)
  if v and v > max then problem(where, "must be <= " .. max) return nil end
  return v
end

-- agent entry -> its directory as written, when a symlink in it was
-- resolved: M.load resolves it again on every call (a link re-pointed
-- while agents.yaml stays the same moves the agent).
local linked = setmetatable({}, { __mode = "k" })

local function parse_agent(name, raw)
  local where = "agents." .. name
  local link
  local a = mapping(raw, where)
  local resolved
  local host = opt(a.host, as_str, where .. ".host")
  if host then
    local _, herr = remote.parse_host(host)
    if herr then problem(where .. ".host", herr) host = nil end
  end
  if a.directory == nil then
    problem(where .. ".directory", "field required")
  else
    local dir = try(as_str, a.directory, where .. ".directory")
    if dir and host then
      -- A path on the other host: kept as written, never resolved here.
      local derr = remote.dir_problem(dir)
      if derr then problem(where .. ".directory", derr) else resolved = dir end
    elseif dir then
      local err
      resolved, err = util.abspath(dir)
      if not resolved then
        problem(where .. ".directory", "cannot resolve " .. util.repr(dir) .. ": " .. err)
      elseif resolved ~= util.lexpath(dir) then
        link = dir
      end
    end
  end
  local agent = {
    directory = resolved,
    host = host,
    description = opt(a.description, as_str, where .. ".description") or "",
    timeout = at_least(opt(a.timeout, as_int, where .. ".timeout"), 0, where .. ".timeout") or 300,
    max_budget_usd = at_least(opt(a.max_budget_usd, as_num, where .. ".max_budget_usd"), 0,
                              where .. ".max_budget_usd"),
    model = opt(a.model, as_str, where .. ".model"),
    permission_mode = opt(a.permission_mode, as_str, where .. ".permission_mode"),
    allowed_tools = opt(a.allowed_tools, str_list, where .. ".allowed_tools"),
    disallowed_tools = opt(a.disallowed_tools, str_list, where .. ".disallowed_tools"),
    capabilities = opt(a.capabilities, str_list, where .. ".capabilities") or json.array(),
    risky_capabilities = opt(a.risky_capabilities, str_list, where .. ".risky_capabilities") or json.array(),
    permissions = parse_permissions(a.permissions, where .. ".permissions"),
    warm = at_most(at_least(opt(a.warm, as_int, where .. ".warm"), 0, where .. ".warm"),
                   M.MAX_WARM, where .. ".warm"),
  }
  if link then linked[agent] = link end
  return agent
end

local function parse_group(name, raw)
  local where = "groups." .. name
  check_name(name, where)
  local g = mapping(raw, where)
  local members = json.array()
  if g.members ~= nil and g.members ~= json.null then
    if type(g.members) ~= "table" then problem(where .. ".members", "expected a list") end
    for i, m in ipairs(type(g.members) == "table" and g.members or {}) do
      local mw = where .. ".members[" .. (i - 1) .. "]"
      local mm = mapping(m, mw)
      if mm.agent == nil then
        problem(mw .. ".agent", "field required")
      else
        local agent = try(as_str, mm.agent, mw .. ".agent")
        if agent and check_name(agent, mw .. ".agent") then
          members[#members + 1] = { agent = agent,
            use_for = opt(mm.use_for, as_str, mw .. ".use_for") or "" }
        end
      end
    end
  end
  return {
    description = opt(g.description, as_str, where .. ".description") or "",
    shared_context = opt(g.shared_context, as_str, where .. ".shared_context") or "",
    members = members,
  }
end

local function parse_settings(raw)
  local s = M.default_settings()
  local r = mapping(raw, "settings")
  local function int(k, min)
    local w = "settings." .. k
    s[k] = at_least(opt(r[k], as_int, w), min, w) or s[k]
  end
  int("default_timeout", 1)
  int("max_dispatch_depth", 1)
  int("max_concurrency", 1)
  int("job_retention_days", 0)
  int("handoff_after_seconds", 0)
  int("ssh_connect_timeout", 1)
  s.default_max_budget_usd = at_least(opt(r.default_max_budget_usd, as_num,
    "settings.default_max_budget_usd"), 0, "settings.default_max_budget_usd")
  s.tree_budget_usd = at_least(opt(r.tree_budget_usd, as_num,
    "settings.tree_budget_usd"), 0, "settings.tree_budget_usd")
  s.default_permission_mode = opt(r.default_permission_mode, as_str, "settings.default_permission_mode")
  s.default_allowed_tools = opt(r.default_allowed_tools, str_list, "settings.default_allowed_tools") or json.array()
  s.default_disallowed_tools = opt(r.default_disallowed_tools, str_list, "settings.default_disallowed_tools") or json.array()
  if r.transport ~= nil and r.transport ~= json.null then
    local t = opt(r.transport, as_str, "settings.transport")
    if t and t ~= "auto" and t ~= "live" and t ~= "oneshot" then
      problem("settings.transport", "expected auto, live or oneshot")
    elseif t then
      s.transport = t
    end
  end
  s.interrupt_grace_seconds = at_least(opt(r.interrupt_grace_seconds, as_num,
    "settings.interrupt_grace_seconds"), 0, "settings.interrupt_grace_seconds") or s.interrupt_grace_seconds
  if r.jobs_outlive_server ~= nil and r.jobs_outlive_server ~= json.null then
    if type(r.jobs_outlive_server) ~= "boolean" then
      problem("settings.jobs_outlive_server", "expected true or false")
    else
      s.jobs_outlive_server = r.jobs_outlive_server
    end
  end
  if r.cache ~= nil and r.cache ~= json.null then
    local c = mapping(r.cache, "settings.cache")
    if c.enabled ~= nil and c.enabled ~= json.null then
      if type(c.enabled) ~= "boolean" then
        problem("settings.cache.enabled", "expected true or false")
      else
        s.cache.enabled = c.enabled
      end
    end
    local function cint(k, min)
      local w = "settings.cache." .. k
      s.cache[k] = at_least(opt(c[k], as_int, w), min, w) or s.cache[k]
    end
    cint("ttl", 0)
    cint("max_size", 1)
    cint("max_bytes", 1)
  end
  if r.live_sessions ~= nil and r.live_sessions ~= json.null then
    local l = mapping(r.live_sessions, "settings.live_sessions")
    local w = "settings.live_sessions."
    s.live_sessions.max = at_most(at_least(opt(l.max, as_int, w .. "max"), 0, w .. "max"),
      M.MAX_LIVE_SESSIONS, w .. "max") or s.live_sessions.max
    s.live_sessions.idle_seconds = at_most(at_least(opt(l.idle_seconds, as_int,
      w .. "idle_seconds"), 1, w .. "idle_seconds"), 86400, w .. "idle_seconds")
      or s.live_sessions.idle_seconds
  end
  return s
end

local function build(doc, path)
  local cfg = M.empty(path)
  if doc == nil or doc == json.null then return cfg end
  local top = mapping(doc, "top level")
  local agents, order = mapping(top.agents, "agents")
  for _, name in ipairs(order) do
    if check_name(name, "agents." .. name) then
      cfg.agents[name] = parse_agent(name, agents[name])
      cfg.agent_names[#cfg.agent_names + 1] = name
    end
  end
  local groups, gorder = mapping(top.groups, "groups")
  for _, name in ipairs(gorder) do
    cfg.groups[name] = parse_group(name, groups[name])
    cfg.group_names[#cfg.group_names + 1] = name
  end
  cfg.settings = parse_settings(top.settings)
  return cfg
end

--- Validates a decoded YAML document into a config table. Raises a
--- {schema=true, message=, problems=} error listing every problem found
--- (one per line of message, in file order).
function M.from_document(doc, path)
  local outer = report
  report = {}
  local ok, cfg = pcall(build, doc, path)
  local found = report
  report = outer
  if not ok then error(cfg, 0) end
  if #found > 0 then
    local msg = found[1]
    if #found > 1 then
      msg = #found .. " problems:\n    " .. table.concat(found, "\n    ")
    end
    error({ schema = true, message = msg, problems = found }, 0)
  end
  return cfg
end

-- ------------------------------------------------------------------ load --

-- The last successfully loaded config per path, keyed by the file's
-- identity (device, inode, size, mtime in ns). Saves are atomic renames,
-- so every change gives a new inode: re-reading "on every call" costs one
-- stat() unless the file really changed. Callers treat the result as
-- read-only; mutations always load fresh under the lock.
local loaded = {}
local listeners = {}

-- True when a symlinked agent directory now resolves elsewhere.
local function moved(cfg)
  for _, a in pairs(cfg.agents) do
    local dir = linked[a]
    if dir and util.abspath(dir) ~= a.directory then return true end
  end
  return false
end

--- fn(names) is called when a re-read finds agents whose entries changed
--- or disappeared, or the defaults they inherit changed (whoever changed the file: this process, the CLI, an
--- editor), so per-agent state such as cached results can be dropped.
function M.on_agents_changed(fn)
  listeners[#listeners + 1] = fn
end

-- The settings an agent inherits where its entry says nothing (what its
-- child is started with: ad.domain.request.effective): a change of one is
-- a change of every agent, for the cache and the processes kept warm.
local INHERITED = { "default_timeout", "default_max_budget_usd", "default_permission_mode",
  "default_allowed_tools", "default_disallowed_tools" }

local function inherited(cfg)
  local s = type(cfg.settings) == "table" and cfg.settings or {}
  local t = {}
  for i, k in ipairs(INHERITED) do t[i] = s[k] == nil and json.null or s[k] end
  return json.encode(json.array(t))
end

local prints = setmetatable({}, { __mode = "k" })

--- What an agent's child is started with as its config says: its entry
--- and the defaults it inherits, as text (memoized on the entry: a loaded
--- config is read-only). Two requests whose fingerprints differ never
--- share a cached answer (ad.domain.runner's cache key), so an answer
--- made under a config that has changed since cannot be served.
function M.agent_fingerprint(settings, agent)
  local fp = prints[agent]
  if not fp then
    fp = json.encode(agent) .. inherited({ settings = settings })
    prints[agent] = fp
  end
  return fp
end

local function changed_agents(old, new)
  local names = {}
  local all = inherited(old) ~= inherited(new)
  for name, a in pairs(old.agents) do
    local b = new.agents[name]
    if all or not b or json.encode(a) ~= json.encode(b) then names[#names + 1] = name end
  end
  table.sort(names)
  return names
end

-- ---------------------------------------------------------- unknown keys --
--
-- Keys this version does not know are kept (and left alone by changes),
-- but a typo such as `permision_mode: plan` would otherwise leave an agent
-- with the inherited permissions without a word: every unknown key is
-- reported, with the known key it most likely meant.

local PERMISSION_KEYS = { permission_mode = true, allowed_tools = true,
  disallowed_tools = true, default_permission_mode = true,
  default_allowed_tools = true, default_disallowed_tools = true }

local function squash(k) return (k:lower():gsub("[%-_ ]", "")) end

--- The known key that `key` most likely meant (a different spelling or
--- case, or a few letters off), or nil.
function M.suggest(key, known)
  local best, best_d
  for _, k in ipairs(known) do
    local d = squash(k) == squash(key) and 0 or suggest.distance(key:lower(), k)
    if d <= math.max(2, #k // 4) and (not best_d or d < best_d) then best, best_d = k, d end
  end
  return best
end

local function unknown_in(map, known, where, out)
  if type(map) ~= "table" or json.is_array(map) or map == json.null then return end
  local set = {}
  for _, k in ipairs(known) do set[k] = true end
  local _, order = mapping(map, where)
  for _, k in ipairs(order) do
    if type(k) == "string" and not set[k] then
      local s = M.suggest(k, known)
      local lk = k:lower()
      out[#out + 1] = { key = k, where = where, suggestion = s,
        permission = (s and PERMISSION_KEYS[s]) or lk:find("permission", 1, true) ~= nil
          or lk:find("tool", 1, true) ~= nil }
    end
  end
end

--- Every key of a decoded agents.yaml document that this version does not
--- know: a list of {key =, where = (the dotted path of its mapping, "" at
--- the top level), suggestion = (a known key or nil), permission = (true
--- when it looks like a permission key: the agent then runs without the
--- restriction it was meant to have)}, in file order.
function M.unknown_keys_in(doc)
  local out = {}
  if type(doc) ~= "table" then return out end
  local outer = report
  report = {} -- shape problems are the schema's to report
  unknown_in(doc, TOP_KEYS, "", out)
  local agents, order = mapping(doc.agents, "agents")
  for _, name in ipairs(order) do
    unknown_in(agents[name], AGENT_KEYS, "agents." .. name, out)
    if type(agents[name]) == "table" then
      unknown_in(agents[name].permissions, PERMISSIONS_KEYS, "agents." .. name .. ".permissions", out)
    end
  end
  local groups, gorder = mapping(doc.groups, "groups")
  for _, name in ipairs(gorder) do
    local g = groups[name]
    unknown_in(g, GROUP_KEYS, "groups." .. name, out)
    if type(g) == "table" and type(g.members) == "table" then
      for i, m in ipairs(g.members) do
        unknown_in(m, MEMBER_KEYS, "groups." .. name .. ".members[" .. (i - 1) .. "]", out)
      end
    end
  end
  if type(doc.settings) == "table" then
    unknown_in(doc.settings, SETTINGS_KEYS, "settings", out)
    unknown_in(doc.settings.cache, CACHE_KEYS, "settings.cache", out)
    unknown_in(doc.settings.live_sessions, LIVE_KEYS, "settings.live_sessions", out)
  end
  report = outer
  return out
end

--- The unknown keys of the config file at path (default: the config):
--- a list as unknown_keys_in returns (empty when the file does not
--- exist), or nil and a load error table when it cannot be read or parsed.
function M.unknown_keys(path)
  path = path or M.path()
  local cfg, err, _, doc = M.read(path)
  if not cfg then
    if err.kind ~= "schema" then return nil, err end
    -- A file with schema errors still has its typos reported.
    return M.unknown_keys_in(doc)
  end
  return M.unknown_keys_in(doc)
end

--- One line for an unknown key: where it is, what it likely meant and,
--- for permission keys, what it costs.
function M.unknown_key_message(u)
  local full = (u.where ~= "" and (u.where .. ".") or "") .. u.key
  local msg = "unknown key " .. full
  if u.suggestion then msg = msg .. " (did you mean " .. u.suggestion .. "?)" end
  if u.permission then
    msg = msg .. "; it is ignored, so " .. (u.where:match("^agents%.") and
      "this agent runs with the inherited permission settings" or
      "no default permission setting comes from it")
  else
    msg = msg .. "; it is ignored"
  end
  return msg
end

-- Warned once per file version (path and identity).
local warned = {}

local function warn_unknown(path, id, cfg)
  if not cfg.unknown_keys or #cfg.unknown_keys == 0 then return end
  local tag = path .. "\0" .. tostring(id)
  if warned[tag] then return end
  warned[tag] = true
  for _, u in ipairs(cfg.unknown_keys) do
    io.stderr:write("agent-dispatch: warning: ", path, ": ", M.unknown_key_message(u), "\n")
  end
end

--- Loads the config (cached while the file is unchanged; fresh = true
--- forces a re-parse and returns a private copy). Returns cfg, or nil and an error table
--- {kind = "schema"|"yaml"|"utf8"|"io", path =, detail =}. Unknown keys
--- (cfg.unknown_keys) are reported on stderr once per version of the file
--- (under `serve`, stderr is the server's log).
function M.load(path, fresh)
  path = path or M.path()
  local id = core.fs.file_id(path)
  local hit = loaded[path]
  if not fresh and id and hit and hit.id == id and not moved(hit.cfg) then return hit.cfg end
  local cfg, err = M.parse_file(path)
  if cfg then warn_unknown(path, id, cfg) end
  -- A fresh load is the caller's own copy (it may be mutated and saved):
  -- never cache it, so the cached copy stays what was last read.
  if cfg and id and not fresh then
    if hit and #listeners > 0 then
      local names = changed_agents(hit.cfg, cfg)
      if #names > 0 then
        for _, fn in ipairs(listeners) do fn(names) end
      end
    end
    loaded[path] = { id = id, cfg = cfg }
  end
  return cfg, err
end

--- Reads and validates the file: cfg, nil, text, doc; or nil, error
--- (and the text and document when they were read). text is nil when the
--- file does not exist.
function M.read(path)
  -- The config decides which directories agents run in, with which
  -- permissions: like a Lua file, it is read only when no one else could
  -- have written it (checked on the descriptor that is read).
  local text, msg, code = core.fs.read_trusted(path, 16 * 1024 * 1024)
  if not text then
    if code == "ENOENT" then return M.empty(path) end
    if code == "untrusted" then
      return nil, { kind = "io", untrusted = true, path = path,
                    detail = "refusing " .. path .. ": " .. msg }
    end
    return nil, { kind = "io", path = path, detail = msg }
  end
  if not core.text.valid(text) then
    return nil, { kind = "utf8", path = path,
                  detail = "the file contains bytes that are not UTF-8" }
  end
  local doc, yerr = core.yaml.load(text)
  if yerr then
    return nil, { kind = "yaml", path = path, detail = yerr }
  end
  local ok, cfg = pcall(M.from_document, doc, path)
  if not ok then
    if type(cfg) == "table" and cfg.schema then
      return nil, { kind = "schema", path = path, detail = cfg.message,
                    problems = cfg.problems }, text, doc
    end
    error(cfg, 0)
  end
  cfg.unknown_keys = M.unknown_keys_in(doc)
  return cfg, nil, text, doc
end

function M.parse_file(path)
  local cfg, err = M.read(path)
  return cfg, err
end

-- ------------------------------------------------------------------ save --

local function ordered(t, keys)
  return setmetatable(t, { __order = keys })
end

--- The document written to disk: schema key order, nulls omitted, empty
--- capability lists and member-less groups pruned, settings in full.
function M.to_document(cfg)
  local agents = ordered({}, cfg.agent_names)
  for _, name in ipairs(cfg.agent_names) do
    local a = cfg.agents[name]
    local out = ordered({}, AGENT_KEYS)
    for _, k in ipairs(AGENT_KEYS) do out[k] = a[k] end
    if out.capabilities and #out.capabilities == 0 then out.capabilities = nil end
    if out.risky_capabilities and #out.risky_capabilities == 0 then out.risky_capabilities = nil end
    agents[name] = out
  end
  local doc = ordered({ agents = agents }, { "agents", "groups", "settings" })
  if #cfg.group_names > 0 then
    local groups = ordered({}, cfg.group_names)
    for _, name in ipairs(cfg.group_names) do
      local g = cfg.groups[name]
      local out = ordered({ description = g.description,
                           shared_context = g.shared_context }, GROUP_KEYS)
      if #g.members > 0 then
        local ms = json.array()
        for i, m in ipairs(g.members) do
          ms[i] = ordered({ agent = m.agent,
                            use_for = m.use_for ~= "" and m.use_for or nil },
                          { "agent", "use_for" })
        end
        out.members = ms
      end
      groups[name] = out
    end
    doc.groups = groups
  end
  local s = cfg.settings
  local settings = ordered({}, SETTINGS_KEYS)
  for _, k in ipairs(SETTINGS_KEYS) do settings[k] = s[k] end
  -- Written only when set: files of users without remote agents stay as they were.
  if settings.ssh_connect_timeout == M.default_settings().ssh_connect_timeout then
    settings.ssh_connect_timeout = nil
  end
  local dl = M.default_settings().live_sessions
  if s.live_sessions.max ~= dl.max or s.live_sessions.idle_seconds ~= dl.idle_seconds then
    settings.live_sessions = ordered({ max = s.live_sessions.max,
      idle_seconds = s.live_sessions.idle_seconds }, LIVE_KEYS)
  else
    settings.live_sessions = nil
  end
  settings.cache = ordered({ enabled = s.cache.enabled, ttl = s.cache.ttl,
                             max_size = s.cache.max_size, max_bytes = s.cache.max_bytes },
                           { "enabled", "ttl", "max_size", "max_bytes" })
  doc.settings = settings
  return doc
end

-- A config directory or agents.yaml without its owner's write bit was
-- made read-only on purpose: respect that (root would write anyway, so
-- the mode is checked, not EACCES). A path that is a symbolic link is
-- written where it leads (and its backups beside the link): the real
-- file and its directory count too. Returns the reason, or nil.
local function read_only(path)
  local list = { util.dirname(path), path }
  local real = core.fs.realpath(path)
  if real and real ~= path then
    list[#list + 1] = util.dirname(real)
    list[#list + 1] = real
  end
  for _, p in ipairs(list) do
    local kind, _, mode = core.fs.stat(p)
    if kind and mode & 128 == 0 then -- 0200
      return string.format("%s is read-only (mode %o); nothing was changed. " ..
        "To allow changes: chmod u+w %s", p, mode, p)
    end
  end
  return nil
end

--- Writes cfg atomically (0600, parent 0700), in full. Returns true or
--- nil, error {kind = "write"|"render", path =, detail =}.
function M.save(cfg)
  local path = cfg.path or M.path()
  local ok, text, rerr = pcall(core.yaml.dump, M.to_document(cfg))
  if not ok or not text then
    return nil, { kind = "render", path = path, detail = tostring(rerr or text) }
  end
  return M.write(path, text)
end

function M.write(path, text)
  local ro = read_only(path)
  if ro then return nil, { kind = "write", path = path, detail = ro } end
  local made, merr = core.fs.mkparent(path, 448) -- 0700
  if not made then return nil, { kind = "write", path = path, detail = merr } end
  local wrote, werr = core.fs.write_atomic(path, text, 384) -- 0600
  if not wrote then return nil, { kind = "write", path = path, detail = werr } end
  return true
end

--- How many previous versions a change keeps: <config>.bak.1 (the file
--- before the last change) to <config>.bak.<BACKUPS> (the oldest).
M.BACKUPS = 5

function M.backup_path(path, n)
  return path .. ".bak." .. (n or 1)
end

-- The backups of a change, under the config lock, in two steps so that a
-- change that fails leaves them as they were: stage_backup writes `text`
-- (the file before this change) as .bak.0; once the new file is written,
-- rotate_backups shifts the older ones up (dropping the oldest) and makes
-- .bak.0 the new .bak.1 (renames: no space needed). A .bak.0 left by a
-- process killed in between holds the version before its change.
local function stage_backup(path, text)
  return core.fs.write_atomic(M.backup_path(path, 0), text, 384) -- 0600
end

local function rotate_backups(path)
  for n = M.BACKUPS - 1, 1, -1 do
    local from = M.backup_path(path, n)
    if core.fs.stat(from) then os.rename(from, M.backup_path(path, n + 1)) end
  end
  os.rename(M.backup_path(path, 0), M.backup_path(path, 1))
end

-- The new text of the file: the old text with only the changed entries
-- rewritten (checked by reading it back); the whole document when there
-- was no file, or when the edit could not be made or checked (with a
-- warning: the previous file is in the backup).
local function new_text(path, text, before, cfg, warnings)
  local want = M.to_document(cfg)
  if text then
    local edited, why = config_edit.apply(text, M.to_document(before), want)
    if edited then
      local doc = core.yaml.load(edited)
      local okb, back = pcall(M.from_document, doc, path)
      if okb and config_edit.equal(M.to_document(back), want) then return edited end
      why = "the edited file did not read back as the change"
    end
    warnings[#warnings + 1] = "could not change " .. path .. " in place (" .. tostring(why) ..
      "); it was rewritten in full, without its comments. The previous version is " ..
      M.backup_path(path) .. "."
  end
  local ok, out, rerr = pcall(core.yaml.dump, want)
  if not ok or not out then return nil, tostring(rerr or out) end
  return out
end

-- Writes the change: the previous file to the backups, then the new
-- text atomically. true, or nil and a save error table.
local function commit(path, text, before, cfg, warnings)
  local out, rerr = new_text(path, text, before, cfg, warnings)
  if not out then return nil, { kind = "render", path = path, detail = rerr } end
  if out == text then return true end
  if text then
    local ro = read_only(path)
    if ro then return nil, { kind = "write", path = path, detail = ro } end
    local ok, berr = stage_backup(path, text)
    if not ok then
      core.fs.unlink(M.backup_path(path, 0))
      return nil, { kind = "write", path = path,
                    detail = "could not keep a backup: " .. tostring(berr) }
    end
  end
  local wrote, werr = M.write(path, out)
  if not wrote then
    if text then core.fs.unlink(M.backup_path(path, 0)) end
    return nil, werr
  end
  if text then rotate_backups(path) end
  return true
end

--- Runs fn(cfg) between a fresh load and a save, under the config lock.
--- fn returns (result, changed): the config is saved only when changed,
--- and then only the entries fn changed are rewritten (ad.config_edit):
--- comments, blank lines, order, unknown keys and values such as `~/x`
--- stay byte for byte. The previous file is kept as <config>.bak.1
--- (M.BACKUPS versions).
--- Returns result, warnings; or nil, error (a load/save error table, a
--- {kind = "lock", path =, wait =, detail =} when the lock could not be
--- taken within the bound, or whatever fn returned as its second value
--- when result is nil).
function M.mutate(fn, path)
  path = path or M.path()
  local warnings = {}
  local ro = read_only(path)
  if ro then return nil, { kind = "write", path = path, detail = ro }, warnings end
  core.fs.mkparent(path, 448)
  local wait = M.lock_wait()
  local lock, lerr, lcode = core.fs.lock(path .. ".lock", wait)
  if not lock then
    -- Writing without the lock could lose another process's change while
    -- both report success; failing is the honest outcome.
    return nil, { kind = "lock", path = path .. ".lock", wait = wait,
                  detail = tostring(lerr), code = lcode }, warnings
  end
  local cfg, err, text, doc = M.read(path)
  if not cfg then
    lock:unlock()
    return nil, err, warnings
  end
  warn_unknown(path, core.fs.file_id(path), cfg)
  local before = M.from_document(doc, path) -- untouched by fn
  local result, changed_or_err = fn(cfg)
  if result == nil then
    lock:unlock()
    return nil, changed_or_err, warnings
  end
  if changed_or_err ~= false then
    local ok, serr = commit(path, text, before, cfg, warnings)
    if not ok then
      lock:unlock()
      return nil, serr, warnings
    end
  end
  lock:unlock()
  return result, nil, warnings
end

--- How long a change waits for a cross-process lock (config and jobs)
--- before it fails: 10 s, or AGENT_DISPATCH_LOCK_WAIT.
function M.lock_wait()
  return tonumber(os.getenv("AGENT_DISPATCH_LOCK_WAIT")) or 10
end

--- The message for a "lock" error: what was locked and why it failed
--- (another process held it, or the lock file could not be opened: the
--- system's reason and its errno name, e.g. a full disk or a directory
--- without write permission).
function M.lock_message(e)
  if e.detail == "timeout" then
    return "could not lock " .. e.path .. ": another process has held it for over " ..
      util.g(e.wait) .. " s"
  end
  local detail = tostring(e.detail)
  local named = e.path .. ": " -- core.fs.lock's message names the path too
  if detail:sub(1, #named) == named then detail = detail:sub(#named + 1) end
  if e.code then detail = detail .. " (" .. e.code .. ")" end
  return "could not lock " .. e.path .. ": " .. detail
end

--- The members of group g whose agent is not configured (sorted, unique).
--- The one implementation of "unknown member".
function M.unknown_members(cfg, g)
  local seen, out = {}, {}
  for _, m in ipairs(g.members) do
    if not cfg.agents[m.agent] and not seen[m.agent] then
      seen[m.agent] = true
      out[#out + 1] = m.agent
    end
  end
  table.sort(out)
  return out
end

return M
