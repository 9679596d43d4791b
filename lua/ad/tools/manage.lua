--- Configuration tools: add_agent, remove_agent, update_agent.
local json = require "ad.infra.json"
local util = require "ad.infra.util"
local tools = require "ad.tools"
local agents = util.lazy "ad.domain.agents"
local state = require "ad.storage.state"
local permission = require "ad.domain.permission"

local MUT = json.object({ readOnlyHint = false, destructiveHint = false,
  idempotentHint = false, openWorldHint = false },
  { "readOnlyHint", "destructiveHint", "idempotentHint", "openWorldHint" })

local function not_found(name, names)
  return tools.envelope("Agent " .. util.repr(name) .. " not found. Available: " ..
    (#names > 0 and table.concat(names, ", ") or "(none)"))
end

-- The error envelope for a permission mode claude would refuse, or nil
-- ('none' and "" clear the mode).
local function bad_mode(mode)
  if agents.is_none(mode) then return nil end
  local problem = permission.problem(mode)
  return problem and tools.envelope("permission_mode " .. problem)
end

-- The error envelope for a model or tool list no dispatch would pass on
-- (agents.flag_problem), or nil ("" and 'none': unchanged or cleared).
local function bad_flag(a)
  for _, f in ipairs({ { "model", "model" }, { "allowed_tools", "allowed tool" },
      { "disallowed_tools", "disallowed tool" } }) do
    local v = a[f[1]]
    local problem = type(v) == "string" and not agents.is_none(v) and agents.flag_problem(f[2], v)
    if problem then return tools.envelope(f[1] .. ": " .. problem .. ".") end
  end
  return nil
end

local function lock_warnings(ctx, ws)
  for _, w in ipairs(ws or {}) do ctx.log("warning", "Warning: " .. w) end
end

tools.define{
  name = "add_agent",
  title = "Register an agent",
  description = "Register a project directory as an agent you can dispatch " ..
    "to. An empty description is generated from the project's files " ..
    "(CLAUDE.md, README, package files, MCP config). Tool lists are " ..
    "comma-separated; empty or 'none' means inherit the defaults in settings.",
  params = {
    { name = "name", type = "string", required = true, description = "Letters, digits, '-', '_'." },
    { name = "directory", type = "string", required = true, description = "The project directory (must exist), " ..
      "or HOST:DIR for a project on another host reached over ssh (HOST as ~/.ssh/config knows it)." },
    { name = "description", type = "string", default = "" },
    { name = "timeout", type = "integer", default = 0, description = "Seconds; 0 = 300." },
    { name = "max_budget_usd", type = "number", default = 0, description = "Spend cap per dispatch; 0 = settings default." },
    { name = "permission_mode", type = "string", default = "",
      description = table.concat(permission.MODES, ", ") .. "; empty or 'none' = inherit." },
    { name = "allowed_tools", type = "string", default = "", description = "CSV, e.g. Bash,Read,Edit" },
    { name = "disallowed_tools", type = "string", default = "", description = "CSV" },
    { name = "capabilities", type = "string", default = "", description = "CSV labels (descriptive only)" },
    { name = "risky_capabilities", type = "string", default = "", description = "CSV labels (descriptive only)" },
  },
  annotations = MUT,
  guard = "io",
  handler = function(a, ctx)
    local err = agents.name_error(a.name)
    if err then return tools.envelope(err) end
    local remote = require "ad.domain.remote"
    local host, dir = remote.split_target(a.directory)
    if host then
      local _, herr = remote.parse_host(host)
      local derr = herr and ("Invalid host " .. util.repr(host) .. ": " .. herr) or remote.dir_problem(dir)
      if derr then return tools.envelope("Invalid directory " .. util.repr(a.directory) .. ": " .. derr) end
    else
      local derr
      dir, derr = agents.resolve_dir(a.directory)
      if not dir then return tools.envelope(derr) end
    end
    if a.timeout < 0 then
      return tools.envelope("timeout must be a positive number of seconds (got " ..
        a.timeout .. "); pass 0 for the default of 300.")
    end
    if a.max_budget_usd < 0 then
      return tools.envelope("max_budget_usd must be >= 0 (got " .. util.num(a.max_budget_usd) ..
        "); 0 means no limit.")
    end
    local bad = bad_mode(a.permission_mode) or bad_flag(a)
    if bad then return bad end
    local desc = a.description
    if desc == "" and host then
      local src = require("ad.domain.introspect").source({ host = host, directory = dir }, ctx.cfg and ctx.cfg.settings)
      desc = src.health() == true and agents.describe_dir(src) or ("Agent in " .. dir .. " on " .. host)
    elseif desc == "" then
      desc = agents.describe_dir(dir)
    end
    -- 'none' means unset here too, as in update_agent.
    local function csv(v) return not agents.is_none(v) and agents.list(v) or nil end
    local fields = {
      directory = dir, host = host, description = desc,
      timeout = a.timeout == 0 and 300 or a.timeout,
      max_budget_usd = a.max_budget_usd > 0 and a.max_budget_usd or nil,
      model = nil,
      permission_mode = not agents.is_none(a.permission_mode) and util.strip(a.permission_mode) or nil,
      allowed_tools = csv(a.allowed_tools),
      disallowed_tools = csv(a.disallowed_tools),
      capabilities = csv(a.capabilities) or json.array(),
      risky_capabilities = csv(a.risky_capabilities) or json.array(),
    }
    local ok, e, ws = agents.add(a.name, fields)
    lock_warnings(ctx, ws)
    if not ok then
      if e == "exists" then
        return tools.envelope("Agent " .. util.repr(a.name) .. " already exists. Remove it first.")
      end
      return tools.save_error("add_agent", e)
    end
    state.invalidate(nil, a.name)
    ctx.log("info", "Added agent " .. a.name .. " -> " .. (host and (host .. ":") or "") .. dir)
    local out = json.object({ added = a.name, directory = dir, host = host, description = desc,
      permission_mode = fields.permission_mode },
      { "added", "directory", "host", "description", "permission_mode", "allowed_tools",
        "disallowed_tools", "capabilities", "risky_capabilities" })
    if fields.allowed_tools and #fields.allowed_tools > 0 then out.allowed_tools = fields.allowed_tools end
    if fields.disallowed_tools and #fields.disallowed_tools > 0 then out.disallowed_tools = fields.disallowed_tools end
    if #fields.capabilities > 0 then out.capabilities = fields.capabilities end
    if #fields.risky_capabilities > 0 then out.risky_capabilities = fields.risky_capabilities end
    return out
  end,
}

tools.define{
  name = "remove_agent",
  title = "Unregister an agent",
  description = "Remove an agent from agents.yaml (its directory is not " ..
    "touched; group memberships that name it are left and flagged unknown).",
  params = { { name = "name", type = "string", required = true } },
  annotations = json.object({ readOnlyHint = false, destructiveHint = true,
    idempotentHint = true, openWorldHint = false },
    { "readOnlyHint", "destructiveHint", "idempotentHint", "openWorldHint" }),
  guard = "io",
  handler = function(a, ctx)
    local ok, e, ws = agents.remove(a.name)
    lock_warnings(ctx, ws)
    if not ok then
      if e.kind == "not_found" then return not_found(a.name, e.names) end
      return tools.save_error("remove_agent", e)
    end
    state.invalidate(nil, a.name)
    ctx.log("info", "Removed agent " .. a.name)
    return json.object({ removed = a.name }, { "removed" })
  end,
}

local UPDATE_ORDER = { "description", "timeout", "max_budget_usd", "model",
  "permission_mode", "allowed_tools", "disallowed_tools", "capabilities",
  "risky_capabilities" }

local function is_none(s)
  return util.strip(s):lower() == "none"
end

tools.define{
  name = "update_agent",
  title = "Change an agent's settings",
  description = "Change an agent's description, timeout, budget, model, " ..
    "permission mode, tool lists or capability labels. Empty or 0 means " ..
    "\"leave unchanged\"; 'none' clears model/permission_mode, resets tool " ..
    "lists to inherit the settings defaults, and empties capabilities; a " ..
    "negative max_budget_usd clears the agent's cap.",
  params = {
    { name = "name", type = "string", required = true },
    { name = "description", type = "string", default = "" },
    { name = "timeout", type = "integer", default = 0 },
    { name = "max_budget_usd", type = "number", default = 0 },
    { name = "model", type = "string", default = "" },
    { name = "permission_mode", type = "string", default = "",
      description = table.concat(permission.MODES, ", ") .. "; 'none' clears." },
    { name = "allowed_tools", type = "string", default = "" },
    { name = "disallowed_tools", type = "string", default = "" },
    { name = "capabilities", type = "string", default = "" },
    { name = "risky_capabilities", type = "string", default = "" },
  },
  annotations = MUT,
  guard = "io",
  handler = function(a, ctx)
    if a.timeout < 0 then
      return tools.envelope("timeout must be a positive number of seconds (got " ..
        a.timeout .. "); pass 0 to leave it unchanged.")
    end
    local bad = bad_mode(a.permission_mode) or bad_flag(a)
    if bad then return bad end
    local ok, e, ws = agents.update(a.name, function(ag)
      local changed = {}
      local function set(k, v) ag[k] = v; changed[k] = true end
      if a.description ~= "" then set("description", a.description) end
      if a.timeout > 0 then set("timeout", a.timeout) end
      if a.max_budget_usd > 0 then set("max_budget_usd", a.max_budget_usd)
      elseif a.max_budget_usd < 0 then set("max_budget_usd", nil) end
      if a.model ~= "" then set("model", (not is_none(a.model)) and a.model or nil) end
      if a.permission_mode ~= "" then
        local pm = util.strip(a.permission_mode)
        set("permission_mode", (not is_none(pm)) and pm or nil)
      end
      for _, k in ipairs({ "allowed_tools", "disallowed_tools" }) do
        if a[k] ~= "" then set(k, (not is_none(a[k])) and agents.list(a[k]) or nil) end
      end
      for _, k in ipairs({ "capabilities", "risky_capabilities" }) do
        if a[k] ~= "" then set(k, is_none(a[k]) and json.array() or agents.list(a[k])) end
      end
      local fields = json.array()
      for _, k in ipairs(UPDATE_ORDER) do
        if changed[k] then fields[#fields + 1] = k end
      end
      return fields
    end)
    lock_warnings(ctx, ws)
    if not ok then
      if e.kind == "not_found" then return not_found(a.name, e.names) end
      if e.kind == "nothing" then
        return tools.envelope("Nothing to update. Pass at least one non-empty field.")
      end
      return tools.save_error("update_agent", e)
    end
    state.invalidate(nil, a.name)
    ctx.log("info", "Updated agent " .. a.name .. ": " .. table.concat(ok, ", "))
    return json.object({ updated = a.name, fields = ok }, { "updated", "fields" })
  end,
}
