--- The agent commands of the CLI: init (config and MCP registration), add,
--- update, remove, list and describe. Returns {name = command}; see
--- ad.cli for the command shape.
local core = require "ad.core"
local json = require "ad.infra.json"
local util = require "ad.infra.util"
local config = require "ad.storage.config"
local agents = require "ad.domain.agents"
local common = require "ad.cli.common"
local introspect = require "ad.domain.introspect"

local out, err, PROG = common.out, common.err, common.PROG
local unless_none = common.unless_none

local C = {}

-- Registers the server with Claude Code; returns 0 whatever happens (a
-- failure prints the manual command instead).
local function register(claude, self_path, spec)
  local manual = "  claude mcp add-json agent-dispatch '" .. spec .. "' --scope user"
  if not claude then
    err("Warning: claude CLI not found. Register MCP server manually.")
    err("  Install Claude Code (npm install -g @anthropic-ai/claude-code), log in by running `claude` once")
    err("  (or set ANTHROPIC_API_KEY), then run:")
    err(manual)
    return false
  end
  if not core.sys.which(PROG) then
    err("Warning: agent-dispatch is not on PATH; registering it by its absolute path ", self_path)
  end
  local p, msg = core.proc.spawn{ argv = { claude, "mcp", "add-json", "agent-dispatch", spec,
                                        "--scope", "user" }, timeout = 60 }
  if not p then
    err("Failed to register MCP server: ", msg)
    err("Register it manually:")
    err(manual)
    return false
  end
  local lines = {}
  while true do
    local l = p:read_line()
    if not l then break end
    lines[#lines + 1] = l
  end
  local info = p:wait()
  p:close()
  if info.exit_code == 0 then
    out("Registered MCP server with Claude Code (user scope).")
    return true
  end
  local why = util.strip(info.stderr ~= "" and info.stderr or table.concat(lines, "\n"))
  if why:lower():find("already exists", 1, true) then
    out("agent-dispatch is already registered with Claude Code (user scope).")
    return true
  end
  err("Failed to register MCP server: ", why)
  err("Register it manually:")
  err(manual)
  return false
end

C.init = {
  usage = "", summary = "Create the config and register the MCP server with Claude Code.",
  run = function()
    local path = config.path()
    if core.fs.stat(path) then
      out("Config already exists: ", path)
    else
      local ok, e = config.save(config.empty(path))
      if not ok then return common.save_error(e) end
      out("Created config: ", path)
    end
    local self_path = core.fs.realpath("/proc/self/exe") or core.sys.which(PROG)
    local spec = json.encode(json.object({ type = "stdio", command = self_path,
                                           args = json.array{ "serve" } },
                                         { "type", "command", "args" }))
    if not register(require("ad.domain.runner").claude_path(), self_path, spec) then return 0 end
    out("")
    out("Next steps:")
    out("  agent-dispatch add <name> <directory>    register a project as an agent")
    out("  agent-dispatch list                      check your agents")
    out("  agent-dispatch test <name>               run one real dispatch")
    out("Then ask Claude Code to use the agent-dispatch tools. If `claude` is not")
    out("logged in yet, run `claude` once and log in (or set ANTHROPIC_API_KEY).")
    return 0
  end,
}

local ADD_OPTS = { { "--host", arg = "HOST", help = "Run the agent on this ssh destination " ..
  "(a Host of ~/.ssh/config, user@host or user@host:port); DIRECTORY is then a path there. " ..
  "NAME HOST:DIRECTORY says the same." } }
for _, opt in ipairs(common.AGENT_OPTS) do ADD_OPTS[#ADD_OPTS + 1] = opt end

-- The host and remote directory of `add` (--host, or a HOST:DIR whose
-- host part has no '/'), or nil for a local agent; or nil, nil, exit
-- status after reporting a bad value.
local function remote_target(o, dir)
  local remote = require "ad.domain.remote"
  local host, rdir = o.host, dir
  if not host then host, rdir = remote.split_target(dir) end
  if not host then return nil end
  local _, herr = remote.parse_host(host)
  if herr then
    err("Error: Invalid value for --host: ", util.repr(host), " ", herr)
    return nil, nil, 2
  end
  local derr = remote.dir_problem(rdir)
  if derr then
    err("Error: Invalid value for 'DIRECTORY': the directory on ", host, " ", derr)
    return nil, nil, 2
  end
  return host, rdir
end

C.add = {
  usage = "NAME [HOST:]DIRECTORY [OPTIONS]", summary = "Register a project directory as an agent.",
  options = ADD_OPTS, positionals = { "NAME", "DIRECTORY" }, min = 2, max = 2,
  run = function(o, pos)
    local name, dir = pos[1], pos[2]
    local host, rdir, rcode = remote_target(o, dir)
    if rcode then return rcode end
    local abs = rdir or util.abspath(dir)
    if not host and (not abs or core.project.health(abs) ~= true) then
      err("Usage: ", PROG, " add NAME DIRECTORY [OPTIONS]")
      err("Error: Invalid value for 'DIRECTORY': ", dir == "" and "it is empty (give the project's directory)."
        or (abs and core.fs.stat(abs) == "file") and ("'" .. dir .. "' is a file, not a directory.")
        or ("Directory '" .. dir .. "' does not exist."))
      return 2
    end
    local bad = common.name_check(name)
    if bad then return bad end
    local budget
    bad, budget = common.check_agent_opts(o)
    if bad then return bad end
    local desc = o.description
    local generated = false -- (said once the agent is added)
    if desc == nil and host then
      -- One probe of the remote project; a host that does not answer is
      -- no reason to refuse (it may be down right now).
      local src = introspect.source({ host = host, directory = abs }, nil)
      if src.health() == true then
        desc = introspect.auto_describe(src)
      else
        desc = "Agent in " .. abs .. " on " .. host
        err("Warning: ", host, ":", abs, " is ", common.health_label(src):lower(),
          src.error and (" (" .. src.error .. ")") or "", "; added anyway")
      end
      generated = true
    elseif desc == nil then
      desc = agents.describe_dir(abs)
      generated = true
    end
    -- 'none' (any case) or "" means unset, as the help and update say.
    local pm = unless_none(o.permission_mode) and util.strip(o.permission_mode)
    local function caps(v) return unless_none(v) and agents.list(v) or json.array() end
    local fields = {
      directory = abs, host = host, description = desc, timeout = o.timeout or 300,
      max_budget_usd = (budget and budget > 0) and budget or nil,
      model = unless_none(o.model), permission_mode = pm,
      allowed_tools = unless_none(o.allowed_tools) and agents.list(o.allowed_tools),
      disallowed_tools = unless_none(o.disallowed_tools) and agents.list(o.disallowed_tools),
      capabilities = caps(o.capabilities), risky_capabilities = caps(o.risky_capabilities),
    }
    local ok, se, ws = agents.add(name, fields)
    common.warnings(ws)
    if not ok then
      if se == "exists" then
        err("Agent '", name, "' already exists. Use 'agent-dispatch remove ", name, "' first.")
        return 1
      end
      return common.save_error(se)
    end
    if generated then out("Auto-generated description: ", common.shown(desc)) end
    out("Added agent '", name, "' -> ", host and (host .. ":") or "", abs)
    return 0
  end,
}

-- Applies the options given to agent entry a; returns the changed fields.
local function apply(a, o, budget)
  local given, f = o._given, {}
  if given.description then a.description = o.description; f[#f + 1] = "description" end
  if given.timeout then a.timeout = o.timeout; f[#f + 1] = "timeout" end
  if given.max_budget or given.max_budget_usd then
    a.max_budget_usd = budget > 0 and budget or nil; f[#f + 1] = "max_budget_usd"
  end
  if given.model then a.model = unless_none(o.model); f[#f + 1] = "model" end
  if given.permission_mode then
    a.permission_mode = unless_none(util.strip(o.permission_mode))
    f[#f + 1] = "permission_mode"
  end
  for _, k in ipairs({ "allowed_tools", "disallowed_tools" }) do
    if given[k] then a[k] = unless_none(o[k]) and agents.list(o[k]) or nil; f[#f + 1] = k end
  end
  for _, k in ipairs({ "capabilities", "risky_capabilities" }) do
    if given[k] then a[k] = unless_none(o[k]) and agents.list(o[k]) or json.array(); f[#f + 1] = k end
  end
  return f
end

C.update = {
  usage = "NAME [OPTIONS]", summary = "Change an agent's settings.",
  options = common.AGENT_OPTS, positionals = { "NAME" }, min = 1, max = 1,
  run = function(o, pos)
    local name = pos[1]
    local bad, budget = common.check_agent_opts(o)
    if bad then return bad end
    local ok, e, ws = agents.update(name, function(a) return apply(a, o, budget) end)
    common.warnings(ws)
    if not ok then
      if e.kind == "not_found" then return common.agent_not_found(name, e.names) end
      if e.kind == "nothing" then
        err("Nothing to update. Pass at least one option (see --help).")
        return 1
      end
      return common.save_error(e)
    end
    out("Updated agent '", name, "': ", table.concat(ok, ", "))
    return 0
  end,
}

-- Removes agent name from cfg; with force also from every group that
-- lists it. Returns the names of the groups that list(ed) it.
local function remove_agent(cfg, name, force)
  if not cfg.agents[name] then return nil, { kind = "not_found", names = cfg.agent_names } end
  cfg.agents[name] = nil
  for i, n in ipairs(cfg.agent_names) do
    if n == name then table.remove(cfg.agent_names, i) break end
  end
  local gs = common.groups_with_member(cfg, name)
  if force then
    for _, g in ipairs(gs) do common.drop_member(cfg.groups[g], name) end
  end
  return gs, true
end

-- "group a" or "groups a, b".
local function groups_text(gs)
  return (#gs == 1 and "group " or "groups ") .. table.concat(gs, ", ")
end

C.remove = {
  usage = "NAME [--force]", summary = "Unregister an agent (its directory is not touched).",
  options = { { "--force", "-f", help = "Also drop the agent from the groups that list it as a member." } },
  positionals = { "NAME" }, min = 1, max = 1,
  run = function(o, pos)
    local name = pos[1]
    local gs, e, ws = config.mutate(function(cfg) return remove_agent(cfg, name, o.force) end)
    common.warnings(ws)
    if not gs then
      if e.kind == "not_found" then return common.agent_not_found(name, e.names) end
      return common.save_error(e)
    end
    if #gs == 0 then
      out("Removed agent '", name, "'.")
    elseif o.force then
      out("Removed agent '", name, "' and its membership in ", groups_text(gs), ".")
    else
      out("Removed agent '", name, "'.")
      err("Warning: ", groups_text(gs), (#gs == 1 and " still names '" or " still name '"), name,
          "' as a member (an unknown agent now). Drop it with:")
      for _, g in ipairs(gs) do err("  ", PROG, " group update ", g, " --remove-member ", name) end
      err("(or pass --force to remove an agent together with its group memberships)")
    end
    return 0
  end,
}

local function list_text(l)
  if #l == 0 then return "(none)" end
  return table.concat(l, ", ")
end

-- The lines of one agent in `list` (after its name and health).
local function list_entry(a)
  local out = function(label, ...) return out(label, common.shown(table.concat({ ... }))) end
  if a.host then out("    host: ", a.host) end
  out("    dir:  ", a.directory)
  out("    desc: ", a.description)
  local conf = {}
  if a.timeout ~= 300 then conf[#conf + 1] = "timeout=" .. a.timeout .. "s" end
  if a.model then conf[#conf + 1] = "model=" .. a.model end
  if a.max_budget_usd and a.max_budget_usd > 0 then
    conf[#conf + 1] = "budget=$" .. util.num(a.max_budget_usd)
  end
  if #conf > 0 then out("    config: ", table.concat(conf, ", ")) end
  if a.permission_mode then out("    permission_mode: ", a.permission_mode) end
  if a.allowed_tools then out("    allowed_tools: ", list_text(a.allowed_tools)) end
  if a.disallowed_tools then out("    disallowed_tools: ", list_text(a.disallowed_tools)) end
  if #a.capabilities > 0 then out("    capabilities: ", table.concat(a.capabilities, ", ")) end
  if #a.risky_capabilities > 0 then
    out("    risky_capabilities: ", table.concat(a.risky_capabilities, ", "))
  end
end

-- Agent name's entry as the JSON of list and describe: every field, null
-- when unset (tool lists: null inherits the settings defaults).
local AGENT_KEYS = { "name", "directory", "host", "health", "description", "timeout", "model",
  "max_budget_usd", "permission_mode", "allowed_tools", "disallowed_tools", "capabilities",
  "risky_capabilities", "project_files" }
local HEALTH = { OK = "ok", ["NOT FOUND"] = "not_found", UNREADABLE = "unreadable",
  UNREACHABLE = "unreachable" }

local function agent_json(name, a, src)
  local function list_or_null(l) return l and json.array(l) or json.null end
  local function or_null(v) return v == nil and json.null or v end
  local e = json.object({ name = name, directory = a.directory,
    health = HEALTH[common.health_label(src)], description = a.description,
    timeout = a.timeout, model = or_null(a.model), max_budget_usd = or_null(a.max_budget_usd),
    permission_mode = or_null(a.permission_mode),
    allowed_tools = list_or_null(a.allowed_tools), disallowed_tools = list_or_null(a.disallowed_tools),
    capabilities = json.array(a.capabilities), risky_capabilities = json.array(a.risky_capabilities) },
    AGENT_KEYS)
  e.host = a.host -- only for a remote agent: local entries keep their shape
  return e
end

local JSON_OPT = common.JSON_OPT

C.list = {
  usage = "[--json]", summary = "List configured agents with their health.",
  options = { JSON_OPT },
  run = function(o)
    local cfg, code = common.load()
    if not cfg then return code end
    introspect.prefetch(cfg)
    if o.json then
      local l = json.array()
      for _, name in ipairs(cfg.agent_names) do
        local a = cfg.agents[name]
        l[#l + 1] = agent_json(name, a, introspect.source(a, cfg.settings))
      end
      return common.json_out(l)
    end
    if #cfg.agent_names == 0 then
      out("No agents configured. Run: agent-dispatch add <name> <directory>")
      return 0
    end
    for _, name in ipairs(cfg.agent_names) do
      local a = cfg.agents[name]
      out("  ", name, " [", common.health_label(introspect.source(a, cfg.settings)), "]")
      list_entry(a)
      out("")
    end
    return 0
  end,
}

local function tools_text(l)
  if l == nil then return "(inherit defaults)" end
  if #l == 0 then return "(none — explicit override)" end
  return table.concat(l, ", ")
end

-- The well-known files present in an agent's directory (a source).
local function project_files(src)
  local files = json.array()
  for _, f in ipairs({ "CLAUDE.md", ".mcp.json", "README.md", "pyproject.toml", "package.json" }) do
    if src.has(f) then files[#files + 1] = f end
  end
  return files
end

C.describe = {
  usage = "NAME [--json]", summary = "Show everything about one agent.",
  options = { JSON_OPT },
  positionals = { "NAME" }, min = 1, max = 1,
  run = function(o, pos)
    local name = pos[1]
    local cfg, a, code = common.load_agent(name)
    if not a then return code end
    local src = introspect.source(a, cfg.settings)
    local files = project_files(src)
    if o.json then
      local e = agent_json(name, a, src)
      e.project_files = files
      return common.json_out(e)
    end
    local function row(label, value) out(string.format("%-18s%s", label, common.shown(value))) end
    out(name, " [", common.health_label(src), "]")
    if a.host then row("host:", a.host) end
    row("directory:", a.directory)
    row("description:", a.description)
    row("timeout:", a.timeout .. "s")
    if a.model then row("model:", a.model) end
    if a.max_budget_usd then row("max_budget_usd:", "$" .. util.num(a.max_budget_usd)) end
    if a.permission_mode then row("permission_mode:", a.permission_mode) end
    if #a.capabilities > 0 then row("capabilities:", table.concat(a.capabilities, ", ")) end
    if #a.risky_capabilities > 0 then row("risky_caps:", table.concat(a.risky_capabilities, ", ")) end
    row("allowed_tools:", tools_text(a.allowed_tools))
    row("disallowed_tools:", tools_text(a.disallowed_tools))
    row("project files:", #files > 0 and table.concat(files, ", ") or "(none)")
    return 0
  end,
}

return C
