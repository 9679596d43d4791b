--- The agent commands of the CLI: init (config and MCP registration), add,
--- update, remove, list and describe. Returns {name = command}; see
--- ad.cli for the command shape.
local core = require "ad.core"
local json = require "ad.infra.json"
local util = require "ad.infra.util"
local config = require "ad.storage.config"
local agents = require "ad.domain.agents"
local common = require "ad.cli.common"

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

C.add = {
  usage = "NAME DIRECTORY [OPTIONS]", summary = "Register a project directory as an agent.",
  options = common.AGENT_OPTS, positionals = { "NAME", "DIRECTORY" }, min = 2, max = 2,
  run = function(o, pos)
    local name, dir = pos[1], pos[2]
    local abs = util.abspath(dir)
    if not abs or core.project.health(abs) ~= true then
      err("Usage: ", PROG, " add NAME DIRECTORY [OPTIONS]")
      err("Error: Invalid value for 'DIRECTORY': Directory '", dir, "' does not exist.")
      return 2
    end
    local bad = common.name_check(name)
    if bad then return bad end
    local budget
    bad, budget = common.check_agent_opts(o)
    if bad then return bad end
    local desc = o.description
    if desc == nil then
      desc = agents.describe_dir(abs)
      out("Auto-generated description: ", desc)
    end
    -- 'none' (any case) or "" means unset, as the help and update say.
    local pm = unless_none(o.permission_mode) and util.strip(o.permission_mode)
    local function caps(v) return unless_none(v) and agents.list(v) or json.array() end
    local fields = {
      directory = abs, description = desc, timeout = o.timeout or 300,
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
    local w = config.permission_warning(pm)
    if w then err("Warning: ", w) end
    out("Added agent '", name, "' -> ", abs)
    return 0
  end,
}

-- Applies the options given to agent entry a; returns the changed fields
-- and the permission mode warning (or nil).
local function apply(a, o, budget)
  local given, f, warning = o._given, {}, nil
  if given.description then a.description = o.description; f[#f + 1] = "description" end
  if given.timeout then a.timeout = o.timeout; f[#f + 1] = "timeout" end
  if given.max_budget or given.max_budget_usd then
    a.max_budget_usd = budget > 0 and budget or nil; f[#f + 1] = "max_budget_usd"
  end
  if given.model then a.model = unless_none(o.model); f[#f + 1] = "model" end
  if given.permission_mode then
    a.permission_mode = unless_none(util.strip(o.permission_mode))
    warning = config.permission_warning(a.permission_mode)
    f[#f + 1] = "permission_mode"
  end
  for _, k in ipairs({ "allowed_tools", "disallowed_tools" }) do
    if given[k] then a[k] = unless_none(o[k]) and agents.list(o[k]) or nil; f[#f + 1] = k end
  end
  for _, k in ipairs({ "capabilities", "risky_capabilities" }) do
    if given[k] then a[k] = unless_none(o[k]) and agents.list(o[k]) or json.array(); f[#f + 1] = k end
  end
  return f, warning
end

C.update = {
  usage = "NAME [OPTIONS]", summary = "Change an agent's settings.",
  options = common.AGENT_OPTS, positionals = { "NAME" }, min = 1, max = 1,
  run = function(o, pos)
    local name = pos[1]
    local bad, budget = common.check_agent_opts(o)
    if bad then return bad end
    local warning
    local ok, e, ws = agents.update(name, function(a)
      local f
      f, warning = apply(a, o, budget)
      return f
    end)
    common.warnings(ws)
    if not ok then
      if e.kind == "not_found" then return common.agent_not_found(name) end
      if e.kind == "nothing" then
        err("Nothing to update. Pass at least one option (see --help).")
        return 1
      end
      return common.save_error(e)
    end
    if warning then err("Warning: ", warning) end
    out("Updated agent '", name, "': ", table.concat(ok, ", "))
    return 0
  end,
}

C.remove = {
  usage = "NAME", summary = "Unregister an agent (its directory is not touched).",
  positionals = { "NAME" }, min = 1, max = 1,
  run = function(_, pos)
    local ok, e, ws = agents.remove(pos[1])
    common.warnings(ws)
    if not ok then
      if e.kind == "not_found" then err("Agent '", pos[1], "' not found.") return 1 end
      return common.save_error(e)
    end
    out("Removed agent '", pos[1], "'.")
    return 0
  end,
}

local function list_text(l)
  if #l == 0 then return "(none)" end
  return table.concat(l, ", ")
end

-- The lines of one agent in `list` (after its name and health).
local function list_entry(a)
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

C.list = {
  usage = "", summary = "List configured agents with their health.",
  run = function()
    local cfg, code = common.load()
    if not cfg then return code end
    if #cfg.agent_names == 0 then
      out("No agents configured. Run: agent-dispatch add <name> <directory>")
      return 0
    end
    for _, name in ipairs(cfg.agent_names) do
      local a = cfg.agents[name]
      out("  ", name, " [", common.health_label(a.directory), "]")
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

C.describe = {
  usage = "NAME", summary = "Show everything about one agent.",
  positionals = { "NAME" }, min = 1, max = 1,
  run = function(_, pos)
    local name = pos[1]
    local _, a, code = common.load_agent(name)
    if not a then return code end
    local function row(label, value) out(string.format("%-18s%s", label, value)) end
    out(name, " [", common.health_label(a.directory), "]")
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
    local files = {}
    for _, f in ipairs({ "CLAUDE.md", ".mcp.json", "README.md", "pyproject.toml", "package.json" }) do
      if core.project.has(a.directory, f) then files[#files + 1] = f end
    end
    row("project files:", #files > 0 and table.concat(files, ", ") or "(none)")
    return 0
  end,
}

return C
