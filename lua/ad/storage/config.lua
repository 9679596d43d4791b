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
local core = require "ad.core"
local util = require "ad.infra.util"
local json = require "ad.infra.json"

local M = {}

M.KNOWN_PERMISSION_MODES = { "default", "plan", "bypassPermissions" }

local AGENT_KEYS = { "directory", "description", "timeout", "max_budget_usd",
  "model", "permission_mode", "allowed_tools", "disallowed_tools",
  "capabilities", "risky_capabilities" }
local GROUP_KEYS = { "description", "shared_context", "members" }
local SETTINGS_KEYS = { "default_timeout", "default_max_budget_usd",
  "default_permission_mode", "default_allowed_tools",
  "default_disallowed_tools", "max_dispatch_depth", "max_concurrency",
  "cache", "job_retention_days" }

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
  }
end

function M.config_dir()
  local p = os.getenv("AGENT_DISPATCH_CONFIG")
  if p and p ~= "" then return util.dirname(util.expanduser(p) or p) end
  return (os.getenv("HOME") or "") .. "/.config/agent-dispatch"
end

function M.path()
  local p = os.getenv("AGENT_DISPATCH_CONFIG")
  if p and p ~= "" then return util.expanduser(p) or p end
  return (os.getenv("HOME") or "") .. "/.config/agent-dispatch/agents.yaml"
end

function M.empty(path)
  return { path = path or M.path(), agents = {}, agent_names = {},
           groups = {}, group_names = {}, settings = M.default_settings() }
end

-- ---------------------------------------------------------------- schema --

local function fail(where, msg)
  error({ schema = true, message = where .. ": " .. msg }, 0)
end

local function as_int(v, where)
  if math.type(v) == "integer" then return v end
  if type(v) == "number" and v == math.floor(v) and v == v then
    return math.tointeger(v)
  end
  if type(v) == "boolean" then return v and 1 or 0 end
  if type(v) == "string" and util.strip(v):match("^[-+]?%d+$") then
    return math.tointeger(tonumber(util.strip(v)))
  end
  fail(where, "expected an integer, got " .. util.repr(v))
end

local function as_num(v, where)
  if type(v) == "number" then return v end
  if type(v) == "string" and tonumber(util.strip(v)) then
    return tonumber(util.strip(v)) + 0.0
  end
  fail(where, "expected a number, got " .. util.repr(v))
end

local function as_str(v, where)
  if type(v) == "string" then return v end
  fail(where, "expected a string, got " .. (type(v) == "table" and "a " ..
    (json.is_array(v) and "list" or "mapping") or util.repr(v)))
end

local function opt(v, conv, where)
  if v == nil or v == json.null then return nil end
  return conv(v, where)
end

local function str_list(v, where)
  if type(v) ~= "table" or (next(v) ~= nil and not json.is_array(v)) then
    fail(where, "expected a list of strings")
  end
  local out = json.array()
  for i, s in ipairs(v) do out[i] = as_str(s, where .. "[" .. (i - 1) .. "]") end
  return out
end

local function mapping(v, where)
  if v == nil or v == json.null then return {}, {} end
  if type(v) ~= "table" or (next(v) ~= nil and json.is_array(v)) then
    fail(where, "expected a mapping")
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
    fail(where, "Invalid agent name " .. util.repr(name) .. ": use letters, " ..
      "digits, '-' and '_', starting with a letter or digit")
  end
end

local function parse_agent(name, raw)
  local where = "agents." .. name
  local a = mapping(raw, where)
  if a.directory == nil then fail(where .. ".directory", "field required") end
  local dir = as_str(a.directory, where .. ".directory")
  local resolved, err = util.abspath(dir)
  if not resolved then fail(where .. ".directory", "cannot resolve " .. util.repr(dir) .. ": " .. err) end
  local agent = {
    directory = resolved,
    description = opt(a.description, as_str, where .. ".description") or "",
    timeout = opt(a.timeout, as_int, where .. ".timeout") or 300,
    max_budget_usd = opt(a.max_budget_usd, as_num, where .. ".max_budget_usd"),
    model = opt(a.model, as_str, where .. ".model"),
    permission_mode = opt(a.permission_mode, as_str, where .. ".permission_mode"),
    allowed_tools = opt(a.allowed_tools, str_list, where .. ".allowed_tools"),
    disallowed_tools = opt(a.disallowed_tools, str_list, where .. ".disallowed_tools"),
    capabilities = opt(a.capabilities, str_list, where .. ".capabilities") or json.array(),
    risky_capabilities = opt(a.risky_capabilities, str_list, where .. ".risky_capabilities") or json.array(),
  }
  if agent.timeout < 0 then fail(where .. ".timeout", "must be >= 0") end
  if agent.max_budget_usd and agent.max_budget_usd < 0 then
    fail(where .. ".max_budget_usd", "must be >= 0")
  end
  return agent
end

local function parse_group(name, raw)
  local where = "groups." .. name
  check_name(name, where)
  local g = mapping(raw, where)
  local members = json.array()
  if g.members ~= nil and g.members ~= json.null then
    if type(g.members) ~= "table" then fail(where .. ".members", "expected a list") end
    for i, m in ipairs(g.members) do
      local mw = where .. ".members[" .. (i - 1) .. "]"
      local mm = mapping(m, mw)
      if mm.agent == nil then fail(mw .. ".agent", "field required") end
      local agent = as_str(mm.agent, mw .. ".agent")
      check_name(agent, mw .. ".agent")
      members[#members + 1] = { agent = agent,
        use_for = opt(mm.use_for, as_str, mw .. ".use_for") or "" }
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
    if r[k] ~= nil and r[k] ~= json.null then
      s[k] = as_int(r[k], "settings." .. k)
      if s[k] < min then fail("settings." .. k, "must be >= " .. min) end
    end
  end
  int("default_timeout", 1)
  int("max_dispatch_depth", 1)
  int("max_concurrency", 1)
  int("job_retention_days", 0)
  s.default_max_budget_usd = opt(r.default_max_budget_usd, as_num, "settings.default_max_budget_usd")
  if s.default_max_budget_usd and s.default_max_budget_usd < 0 then
    fail("settings.default_max_budget_usd", "must be >= 0")
  end
  s.default_permission_mode = opt(r.default_permission_mode, as_str, "settings.default_permission_mode")
  s.default_allowed_tools = opt(r.default_allowed_tools, str_list, "settings.default_allowed_tools") or json.array()
  s.default_disallowed_tools = opt(r.default_disallowed_tools, str_list, "settings.default_disallowed_tools") or json.array()
  if r.cache ~= nil and r.cache ~= json.null then
    local c = mapping(r.cache, "settings.cache")
    if c.enabled ~= nil and c.enabled ~= json.null then
      if type(c.enabled) ~= "boolean" then fail("settings.cache.enabled", "expected true or false") end
      s.cache.enabled = c.enabled
    end
    if c.ttl ~= nil and c.ttl ~= json.null then
      s.cache.ttl = as_int(c.ttl, "settings.cache.ttl")
      if s.cache.ttl < 0 then fail("settings.cache.ttl", "must be >= 0") end
    end
    if c.max_size ~= nil and c.max_size ~= json.null then
      s.cache.max_size = as_int(c.max_size, "settings.cache.max_size")
      if s.cache.max_size < 1 then fail("settings.cache.max_size", "must be >= 1") end
    end
    if c.max_bytes ~= nil and c.max_bytes ~= json.null then
      s.cache.max_bytes = as_int(c.max_bytes, "settings.cache.max_bytes")
      if s.cache.max_bytes < 1 then fail("settings.cache.max_bytes", "must be >= 1") end
    end
  end
  return s
end

--- Validates a decoded YAML document into a config table. Raises a
--- {schema=true, message=} error on the first problem.
function M.from_document(doc, path)
  local cfg = M.empty(path)
  if doc == nil or doc == json.null then return cfg end
  local top = mapping(doc, "top level")
  local agents, order = mapping(top.agents, "agents")
  for _, name in ipairs(order) do
    check_name(name, "agents." .. name)
    cfg.agents[name] = parse_agent(name, agents[name])
    cfg.agent_names[#cfg.agent_names + 1] = name
  end
  local groups, gorder = mapping(top.groups, "groups")
  for _, name in ipairs(gorder) do
    cfg.groups[name] = parse_group(name, groups[name])
    cfg.group_names[#cfg.group_names + 1] = name
  end
  cfg.settings = parse_settings(top.settings)
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

--- fn(names) is called when a re-read finds agents whose entries changed
--- or disappeared (whoever changed the file: this process, the CLI, an
--- editor), so per-agent state such as cached results can be dropped.
function M.on_agents_changed(fn)
  listeners[#listeners + 1] = fn
end

local function changed_agents(old, new)
  local names = {}
  for name, a in pairs(old.agents) do
    local b = new.agents[name]
    if not b or json.encode(a) ~= json.encode(b) then names[#names + 1] = name end
  end
  table.sort(names)
  return names
end

--- Loads the config (cached while the file is unchanged; fresh = true
--- forces a re-parse and returns a private copy). Returns cfg, or nil and an error table
--- {kind = "schema"|"yaml"|"utf8"|"io", path =, detail =}.
function M.load(path, fresh)
  path = path or M.path()
  local id = core.fs.file_id(path)
  local hit = loaded[path]
  if not fresh and id and hit and hit.id == id then return hit.cfg end
  local cfg, err = M.parse_file(path)
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

function M.parse_file(path)
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
      return nil, { kind = "schema", path = path, detail = cfg.message }
    end
    error(cfg, 0)
  end
  return cfg
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
  settings.cache = ordered({ enabled = s.cache.enabled, ttl = s.cache.ttl,
                             max_size = s.cache.max_size, max_bytes = s.cache.max_bytes },
                           { "enabled", "ttl", "max_size", "max_bytes" })
  doc.settings = settings
  return doc
end

-- A config directory or agents.yaml without its owner's write bit was
-- made read-only on purpose: respect that (root would write anyway, so
-- the mode is checked, not EACCES). Returns the reason, or nil.
local function read_only(path)
  local dir = util.dirname(path)
  for _, p in ipairs({ dir, path }) do
    local kind, _, mode = core.fs.stat(p)
    if kind and mode & 128 == 0 then -- 0200
      return string.format("%s is read-only (mode %o); nothing was changed. " ..
        "To allow changes: chmod u+w %s", p, mode, p)
    end
  end
  return nil
end

--- Writes cfg atomically (0600, parent 0700). Returns true or nil, error
--- {kind = "write"|"render", path =, detail =}.
function M.save(cfg)
  local path = cfg.path or M.path()
  local ok, text, rerr = pcall(core.yaml.dump, M.to_document(cfg))
  if not ok or not text then
    return nil, { kind = "render", path = path, detail = tostring(rerr or text) }
  end
  local ro = read_only(path)
  if ro then return nil, { kind = "write", path = path, detail = ro } end
  local made, merr = core.fs.mkparent(path, 448) -- 0700
  if not made then return nil, { kind = "write", path = path, detail = merr } end
  local wrote, werr = core.fs.write_atomic(path, text, 384) -- 0600
  if not wrote then return nil, { kind = "write", path = path, detail = werr } end
  return true
end

--- Runs fn(cfg) between a fresh load and a save, under the config lock.
--- fn returns (result, changed): the config is saved only when changed.
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
  local lock, lerr = core.fs.lock(path .. ".lock", wait)
  if not lock then
    -- Writing without the lock could lose another process's change while
    -- both report success; failing is the honest outcome.
    return nil, { kind = "lock", path = path .. ".lock", wait = wait,
                  detail = tostring(lerr) }, warnings
  end
  local cfg, err = M.load(path, true)
  if not cfg then
    lock:unlock()
    return nil, err, warnings
  end
  local result, changed_or_err = fn(cfg)
  if result == nil then
    lock:unlock()
    return nil, changed_or_err, warnings
  end
  if changed_or_err ~= false then
    local ok, serr = M.save(cfg)
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

--- The message for a "lock" error: what was locked and why it failed.
function M.lock_message(e)
  if e.detail == "timeout" then
    return "could not lock " .. e.path .. ": another process has held it for over " ..
      util.g(e.wait) .. " s"
  end
  return "could not lock " .. e.path .. ": " .. e.detail
end

--- Warning text for a permission mode nobody knows, or nil.
function M.permission_warning(mode)
  if mode == nil then return nil end
  local m = util.strip(mode)
  if m == "" then return nil end
  for _, k in ipairs(M.KNOWN_PERMISSION_MODES) do
    if k == m then return nil end
  end
  return "Unknown permission_mode: " .. util.repr(mode) .. ". Known values: " ..
    table.concat(M.KNOWN_PERMISSION_MODES, ", ") ..
    " (other values the claude CLI accepts, such as acceptEdits, are passed through)"
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
