--- The command-line interface: one function per command, each returning
--- the process exit status (0 ok, 1 reported error, 2 usage error).
--- Config errors name the file and the problem, leave it untouched and
--- exit 1 - never a traceback.
local core = require "ad.core"
local json = require "ad.json"
local util = require "ad.util"
local config = require "ad.config"
local agents = require "ad.agents"
local args = require "ad.args"
local introspect = require "ad.introspect"

local M = {}
local PROG = "agent-dispatch"

local function out(...) io.stdout:write(...) io.stdout:write("\n") end
local function err(...) io.stderr:write(...) io.stderr:write("\n") end

local function load_error(e)
  local what = ({
    schema = "has an invalid schema:",
    yaml = "is not valid YAML:",
    utf8 = "is not valid UTF-8 (re-save it as UTF-8):",
    io = "could not be read:",
  })[e.kind] or "could not be loaded:"
  err("Error: config at ", e.path, " ", what)
  err("  ", e.detail)
  return 1
end

local function save_error(e)
  if e.kind == "render" then
    err("Error: could not serialize the config to YAML: ", e.detail)
    err("Nothing changed: the previous config is intact. This is a bug in agent-dispatch; please report it.")
  elseif e.kind == "lock" then
    err("Error: ", config.lock_message(e), ".")
    err("Nothing changed. Try again; if it persists, look for a stuck agent-dispatch process.")
  elseif e.kind == "write" then
    err("Error: could not write ", e.path, ": ", e.detail)
    err("Nothing changed: the previous config is intact (the write is atomic). " ..
        "Check free space and permissions on ", util.dirname(e.path), ".")
  else
    return load_error(e)
  end
  return 1
end

local function warnings(ws)
  for _, w in ipairs(ws or {}) do err("Warning: ", w) end
end

local function load()
  local cfg, e = config.load()
  if not cfg then return nil, load_error(e) end
  return cfg
end

local function health_label(dir)
  local h = introspect.health(dir)
  if h == true then return "OK" end
  if h == false then return "NOT FOUND" end
  return "UNREADABLE"
end

local function list_text(l)
  if l == nil then return nil end
  if #l == 0 then return "(none)" end
  return table.concat(l, ", ")
end

-- ----------------------------------------------------------- commands --

M.commands = {}
local C = M.commands

C.serve = {
  usage = "", summary = "Run the MCP server on stdio (what Claude Code starts).",
  run = function()
    return require("ad.mcp").serve()
  end,
}

C.init = {
  usage = "", summary = "Create the config and register the MCP server with Claude Code.",
  run = function()
    local path = config.path()
    if core.stat(path) then
      out("Config already exists: ", path)
    else
      local ok, e = config.save(config.empty(path))
      if not ok then return save_error(e) end
      out("Created config: ", path)
    end
    local self_path = core.realpath("/proc/self/exe") or core.which(PROG)
    local spec = json.encode(json.object({ type = "stdio", command = self_path,
                                           args = json.array{ "serve" } },
                                         { "type", "command", "args" }))
    local manual = "  claude mcp add-json agent-dispatch '" .. spec .. "' --scope user"
    local claude = require("ad.runner").claude_path()
    if not claude then
      err("Warning: claude CLI not found. Register MCP server manually.")
      err("  Install Claude Code (npm install -g @anthropic-ai/claude-code), log in by running `claude` once")
      err("  (or set ANTHROPIC_API_KEY), then run:")
      err(manual)
      return 0
    end
    if not core.which(PROG) then
      err("Warning: agent-dispatch is not on PATH; registering it by its absolute path ", self_path)
    end
    local p, msg = core.process{ argv = { claude, "mcp", "add-json", "agent-dispatch", spec,
                                          "--scope", "user" }, timeout = 60 }
    if not p then
      err("Failed to register MCP server: ", msg)
      err("Register it manually:")
      err(manual)
      return 0
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
    else
      local why = util.strip(info.stderr ~= "" and info.stderr or table.concat(lines, "\n"))
      if why:lower():find("already exists", 1, true) then
        out("agent-dispatch is already registered with Claude Code (user scope).")
      else
        err("Failed to register MCP server: ", why)
        err("Register it manually:")
        err(manual)
        return 0
      end
    end
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

local AGENT_OPTS = {
  { "--description", "-d", arg = "TEXT", help = "What the agent is good at." },
  { "--timeout", arg = "INT", type = "int", help = "Seconds per dispatch (default 300)." },
  { "--model", arg = "TEXT", help = "Model for this agent ('none' clears)." },
  { "--max-budget", arg = "FLOAT", type = "float", help = "USD cap per dispatch (0 clears)." },
  { "--max-budget-usd", arg = "FLOAT", type = "float", help = "Alias of --max-budget." },
  { "--permission-mode", arg = "TEXT", help = "default, plan, bypassPermissions, ..." },
  { "--allowed-tools", arg = "CSV", help = "Tools the agent may use ('none' = inherit)." },
  { "--disallowed-tools", arg = "CSV", help = "Tools the agent may not use." },
  { "--capabilities", arg = "CSV", help = "Descriptive labels." },
  { "--risky-capabilities", arg = "CSV", help = "Descriptive labels of risky abilities." },
}

local function budget_opt(o)
  if o._given.max_budget_usd then return o.max_budget_usd end
  return o.max_budget
end

C.add = {
  usage = "NAME DIRECTORY [OPTIONS]", summary = "Register a project directory as an agent.",
  options = AGENT_OPTS, positionals = { "NAME", "DIRECTORY" }, min = 2, max = 2,
  run = function(o, pos)
    local name, dir = pos[1], pos[2]
    local abs = util.abspath(dir)
    if not abs or core.health(abs) ~= true then
      err("Usage: ", PROG, " add NAME DIRECTORY [OPTIONS]")
      err("Error: Invalid value for 'DIRECTORY': Directory '", dir, "' does not exist.")
      return 2
    end
    local e = agents.name_error(name)
    if e then err("Error: ", e) return 1 end
    if o.timeout ~= nil and o.timeout < 1 then
      err("Error: --timeout must be a positive number of seconds (got ", o.timeout, ").")
      return 1
    end
    local budget = budget_opt(o)
    if budget ~= nil and budget < 0 then
      err("Error: --max-budget must be >= 0 (got ", util.num(budget), "); use 0 to clear the limit.")
      return 1
    end
    local desc = o.description
    if desc == nil then
      desc = agents.describe_dir(abs)
      out("Auto-generated description: ", desc)
    end
    -- 'none' (any case) or "" means unset, as the help and update say.
    local function given(v) return v and not agents.is_none(v) and v or nil end
    local pm = given(o.permission_mode) and util.strip(o.permission_mode)
    local function caps(v) return given(v) and agents.list(v) or json.array() end
    local fields = {
      directory = abs, description = desc, timeout = o.timeout or 300,
      max_budget_usd = (budget and budget > 0) and budget or nil,
      model = given(o.model), permission_mode = pm,
      allowed_tools = given(o.allowed_tools) and agents.list(o.allowed_tools),
      disallowed_tools = given(o.disallowed_tools) and agents.list(o.disallowed_tools),
      capabilities = caps(o.capabilities), risky_capabilities = caps(o.risky_capabilities),
    }
    local ok, se, ws = agents.add(name, fields)
    warnings(ws)
    if not ok then
      if se == "exists" then
        err("Agent '", name, "' already exists. Use 'agent-dispatch remove ", name, "' first.")
        return 1
      end
      return save_error(se)
    end
    local w = config.permission_warning(pm)
    if w then err("Warning: ", w) end
    out("Added agent '", name, "' -> ", abs)
    return 0
  end,
}

local function is_none(s) return util.strip(s or ""):lower() == "none" or util.strip(s or "") == "" end

C.update = {
  usage = "NAME [OPTIONS]", summary = "Change an agent's settings.",
  options = AGENT_OPTS, positionals = { "NAME" }, min = 1, max = 1,
  run = function(o, pos)
    local name = pos[1]
    if o.timeout ~= nil and o.timeout < 1 then
      err("Error: --timeout must be a positive number of seconds (got ", o.timeout, ").")
      return 1
    end
    local budget = budget_opt(o)
    if budget ~= nil and budget < 0 then
      err("Error: --max-budget must be >= 0 (got ", util.num(budget), "); use 0 to clear the limit.")
      return 1
    end
    local given = o._given
    local warning
    local ok, e, ws = agents.update(name, function(a)
      local f = {}
      if given.description then a.description = o.description; f[#f + 1] = "description" end
      if given.timeout then a.timeout = o.timeout; f[#f + 1] = "timeout" end
      if given.max_budget or given.max_budget_usd then
        a.max_budget_usd = budget > 0 and budget or nil; f[#f + 1] = "max_budget_usd"
      end
      if given.model then a.model = (not is_none(o.model)) and o.model or nil; f[#f + 1] = "model" end
      if given.permission_mode then
        local pm = util.strip(o.permission_mode)
        a.permission_mode = (not is_none(pm)) and pm or nil
        warning = config.permission_warning(a.permission_mode)
        f[#f + 1] = "permission_mode"
      end
      for _, k in ipairs({ "allowed_tools", "disallowed_tools" }) do
        if given[k] then a[k] = (not is_none(o[k])) and agents.list(o[k]) or nil; f[#f + 1] = k end
      end
      for _, k in ipairs({ "capabilities", "risky_capabilities" }) do
        if given[k] then a[k] = is_none(o[k]) and json.array() or agents.list(o[k]); f[#f + 1] = k end
      end
      return f
    end)
    warnings(ws)
    if not ok then
      if e.kind == "not_found" then
        err("Agent '", name, "' not found. Run 'agent-dispatch list' to see agents.")
        return 1
      elseif e.kind == "nothing" then
        err("Nothing to update. Pass at least one option (see --help).")
        return 1
      end
      return save_error(e)
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
    warnings(ws)
    if not ok then
      if e.kind == "not_found" then err("Agent '", pos[1], "' not found.") return 1 end
      return save_error(e)
    end
    out("Removed agent '", pos[1], "'.")
    return 0
  end,
}

C.list = {
  usage = "", summary = "List configured agents with their health.",
  run = function()
    local cfg, code = load()
    if not cfg then return code end
    if #cfg.agent_names == 0 then
      out("No agents configured. Run: agent-dispatch add <name> <directory>")
      return 0
    end
    for _, name in ipairs(cfg.agent_names) do
      local a = cfg.agents[name]
      out("  ", name, " [", health_label(a.directory), "]")
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
    local cfg, code = load()
    if not cfg then return code end
    local name = pos[1]
    local a = cfg.agents[name]
    if not a then
      err("Agent '", name, "' not found. Run 'agent-dispatch list' to see agents.")
      return 1
    end
    local function row(label, value) out(string.format("%-18s%s", label, value)) end
    out(name, " [", health_label(a.directory), "]")
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
      if core.has(a.directory, f) then files[#files + 1] = f end
    end
    row("project files:", #files > 0 and table.concat(files, ", ") or "(none)")
    return 0
  end,
}

C.test = {
  usage = "NAME [TASK] [--stream] [--timeout N]",
  summary = "Run one real dispatch to an agent and show the answer.",
  options = { { "--stream", help = "Show progress lines while the agent works." },
              { "--timeout", arg = "N", type = "int", help = "One-off timeout in seconds." } },
  positionals = { "NAME", "TASK" }, min = 1, max = 2,
  run = function(o, pos)
    local cfg, code = load()
    if not cfg then return code end
    local name = pos[1]
    local a = cfg.agents[name]
    if not a then
      err("Agent '", name, "' not found. Run 'agent-dispatch list' to see agents.")
      return 1
    end
    local t = pos[2] or "What project is this? Describe in one sentence."
    core.set_limit(cfg.settings.max_concurrency)
    out("Dispatching to '", name, "' (", a.directory, ")...")
    out("Task: ", t)
    out("---")
    local agent = util.copy(a)
    if o.timeout and o.timeout > 0 then agent.timeout = o.timeout end
    local r = require("ad.runner").dispatch({ name = name, agent = agent, settings = cfg.settings,
      task = t, stream = o.stream,
      on_progress = o.stream and function(line) err("  -> ", line) end or nil })
    if r.success then
      out(r.result)
      if r.hint then out("") out("Note: ", r.hint) end
      if r.cost_usd then
        out("")
        out(string.format("--- Cost: $%.4f | Turns: %s", r.cost_usd, tostring(r.num_turns or "?")))
      end
      return 0
    end
    err("Error: ", r.error)
    if r.error_type == "permission" then
      err("Diagnosis: permission error")
      err("  agent-dispatch update ", name, " --permission-mode bypassPermissions")
      err("  agent-dispatch update ", name, " --allowed-tools Bash,Read,Edit,Write")
    elseif r.error_type == "timeout" then
      err("Diagnosis: timeout")
      err("  agent-dispatch test ", name, " --timeout 600      (one-off)")
      err("  agent-dispatch update ", name, " --timeout 600    (permanent)")
    elseif r.error_type == "budget" then
      err("Diagnosis: spend cap reached")
      err("  The claude CLI stopped the session at --max-budget-usd.")
      err("  agent-dispatch update ", name, " --max-budget-usd 2.0")
      err("  agent-dispatch update ", name, " --model haiku")
    end
    return 1
  end,
}

C.run = {
  usage = "[--json] [--timeout SECONDS] SCRIPT.lua [ARGS...] (options may follow the script; -- ends them)",
  summary = "Run a Lua batch script with the agent_dispatch module.",
  raw = true,
  run = function(_, pos)
    return require("ad.run").main(pos)
  end,
}

-- ------------------------------------------------------------- doctor --

C.doctor = {
  usage = "", summary = "Check the environment, config, registration, agents and groups.",
  run = function()
    local issues, warns = 0, 0
    local function okl(msg) out("  [OK] ", msg) end
    local function warn(msg, ...) warns = warns + 1; out("  [WARN] ", msg)
      for _, l in ipairs({ ... }) do out("    ", l) end end
    local function fail(msg, ...) issues = issues + 1; out("  [FAIL] ", msg)
      for _, l in ipairs({ ... }) do out("    ", l) end end
    out("Environment")
    local claude = require("ad.runner").claude_path()
    if claude then okl("claude CLI: " .. claude)
    else fail("claude CLI not found on PATH", "Install: npm install -g @anthropic-ai/claude-code") end
    if core.which(PROG) then okl("agent-dispatch: " .. core.which(PROG))
    else warn("agent-dispatch not on PATH (MCP server still works via absolute path)") end
    out("Config")
    local path = config.path()
    local cfg, e
    if not core.stat(path) then
      warn("Config not found: " .. path, "Run: agent-dispatch init")
    else
      cfg, e = config.load(path)
      if cfg then
        okl(("Config: %s (%d %s)"):format(path, #cfg.agent_names, #cfg.agent_names == 1 and "agent" or "agents"))
      elseif e.kind == "schema" then fail("Config schema invalid: " .. path, e.detail)
      elseif e.kind == "yaml" then fail("Config not valid YAML: " .. path, e.detail)
      elseif e.kind == "utf8" then fail("Config is not valid UTF-8: " .. path, "Re-save the file as UTF-8.")
      else fail("Config could not be read: " .. path, e.detail) end
    end
    local jok, jerr = pcall(require("ad.jobs").dir)
    if not jok then fail(tostring(type(jerr) == "table" and jerr.message or jerr)) end
    out("MCP registration")
    if not claude then
      warn("Skipped (claude CLI missing)")
    else
      local p = core.process{ argv = { claude, "mcp", "list" }, timeout = 10 }
      local lines = {}
      if p then
        while true do local l = p:read_line() if not l then break end lines[#lines + 1] = l end
        local info = p:wait()
        p:close()
        local found = false
        for _, l in ipairs(lines) do
          if l:match("^agent%-dispatch[:%s]") then found = true end
        end
        if info.timed_out then warn("Could not check MCP registration: claude mcp list timed out")
        elseif info.exit_code == 0 and found then okl("agent-dispatch is registered with Claude Code")
        else warn("agent-dispatch is not registered with Claude Code", "Run: agent-dispatch init") end
      else
        warn("Could not check MCP registration: cannot run " .. claude)
      end
    end
    out("Agents")
    if not cfg then warn("Skipped (config could not be loaded)")
    elseif #cfg.agent_names == 0 then warn("No agents configured. Add one: agent-dispatch add <name> <directory>")
    else
      for _, name in ipairs(cfg.agent_names) do
        local a = cfg.agents[name]
        local h, herr = core.health(a.directory)
        if h == true then
          local files = {}
          for _, f in ipairs({ "CLAUDE.md", ".mcp.json" }) do
            if core.has(a.directory, f) then files[#files + 1] = f end
          end
          okl(name .. ": " .. a.directory .. (#files > 0 and (" [" .. table.concat(files, ", ") .. "]") or ""))
        elseif h == false then fail(name .. ": directory missing - " .. a.directory)
        else fail(name .. ": directory unreadable - " .. tostring(herr)) end
      end
    end
    out("Groups")
    if not cfg then warn("Skipped (config could not be loaded)")
    elseif #cfg.group_names == 0 then okl("No groups configured")
    else
      for _, g in ipairs(cfg.group_names) do
        local grp = cfg.groups[g]
        local unknown = config.unknown_members(cfg, grp)
        local fix = "Fix by recreating: agent-dispatch group remove " .. g ..
          " && agent-dispatch group add " .. g .. " --member ... (or edit agents.yaml)"
        if #unknown > 0 then fail(g .. ": unknown member(s): " .. table.concat(unknown, ", "), fix)
        elseif #grp.members == 0 then warn(g .. ": no members configured", fix)
        else okl(("%s: %d %s"):format(g, #grp.members, #grp.members == 1 and "member" or "members")) end
      end
    end
    out("Summary")
    if issues == 0 and warns == 0 then
      out("  All checks passed.")
    else
      local parts = {}
      if issues > 0 then parts[#parts + 1] = issues .. (issues == 1 and " issue" or " issues") end
      if warns > 0 then parts[#parts + 1] = warns .. (warns == 1 and " warning" or " warnings") end
      out("  ", table.concat(parts, ", "))
    end
    return issues > 0 and 1 or 0
  end,
}

-- --------------------------------------------------------------- jobs --

local function age(t)
  local d = math.max(0, core.time() - (tonumber(t) or core.time()))
  if d < 60 then return math.floor(d) .. "s" end
  if d < 3600 then return math.floor(d / 60) .. "m" end
  if d < 86400 then return math.floor(d / 3600) .. "h" end
  return math.floor(d / 86400) .. "d"
end

local function job_or_exit(id)
  local jobs = require "ad.jobs"
  if not jobs.valid(id) then
    err("Invalid job id: ", util.repr(id), " (expected 32 hex chars)")
    return nil, 1
  end
  local rec = jobs.get(id)
  if not rec then err("Job not found: ", id) return nil, 1 end
  return rec
end

C.jobs = {
  usage = "[--status S] [--limit N]", summary = "List background jobs, newest first.",
  options = { { "--status", arg = "S", choices = { "pending", "running", "done", "failed", "cancelled" } },
              { "--limit", arg = "N", type = "int", help = "How many (default 20)." } },
  run = function(o)
    local list = require("ad.jobs").list(o.status, math.max(1, o.limit or 20))
    if #list == 0 then
      out(o.status and ("No " .. o.status .. " jobs found.") or "No jobs found.")
      return 0
    end
    for _, r in ipairs(list) do
      out(r.id, "  ", r.status, "  ", tostring(r.agent), "  ", age(r.created_at), "  ",
          (util.cut(r.task or "", 60):gsub("\n", " ")))
    end
    return 0
  end,
}

C.job = {
  usage = "ID", summary = "Show one job with its progress and result.",
  positionals = { "ID" }, min = 1, max = 1,
  run = function(_, pos)
    local r, code = job_or_exit(pos[1])
    if not r then return code end
    out(r.id, " [", r.status, "]")
    out("  agent:     ", tostring(r.agent))
    out("  task:      ", util.cut(r.task or "", 200))
    out("  created:   ", age(r.created_at), " ago")
    if r.started_at then out("  started:   ", age(r.started_at), " ago") end
    if r.completed_at then out("  completed: ", age(r.completed_at), " ago") end
    if r.error then out("  error:     ", util.cut(r.error, 300)) end
    if type(r.progress) == "table" and #r.progress > 0 then
      out("  progress:")
      for i = math.max(1, #r.progress - 9), #r.progress do out("    ", r.progress[i]) end
    end
    if type(r.result) == "table" then
      out("  success:   ", r.result.success and "True" or "False")
      if r.result.cost_usd then out(string.format("  cost_usd:  $%.4f", r.result.cost_usd)) end
      if r.result.budget_exceeded then out("  budget:    EXCEEDED") end
      local text = r.result.result or ""
      out("  result:")
      for line in (util.cut(text, 2000) .. "\n"):gmatch("(.-)\n") do out("    ", line) end
      if util.ulen(text) > 2000 then out("  … truncated (", util.ulen(text), " chars total)") end
    end
    return 0
  end,
}

C.cancel = {
  usage = "ID", summary = "Cancel a job (pending, or running even if its server has exited).",
  positionals = { "ID" }, min = 1, max = 1,
  run = function(_, pos)
    local r, code = job_or_exit(pos[1])
    if not r then return code end
    local res = require("ad.async").cancel(pos[1])
    if res.outcome == "cancelled" then
      out("Cancelled: ", pos[1])
    elseif res.outcome == "cancelled_running" then
      out("Cancelled: ", pos[1], " (", res.message, ")")
    elseif res.outcome == "already_terminal" then
      out("Job already ", res.status, "; nothing to cancel.")
    elseif type(r.process) ~= "table" then
      err("Job ", pos[1], " was not cancelled. ", res.message)
      return 1
    else
      err("Job ", pos[1], " is running in a live agent-dispatch server and its subprocess " ..
          "could not be verified, so it was not touched. Use the dispatch_cancel MCP tool, or wait.")
      return 1
    end
    return 0
  end,
}

C.gc = {
  usage = "[--days N | --all]", summary = "Delete finished jobs older than N days (default 7).",
  options = { { "--days", arg = "N", type = "float" }, { "--all", help = "Every finished job, any age." } },
  run = function(o)
    local jobs = require "ad.jobs"
    if o.all then
      out("Deleted ", jobs.gc(0), " terminal job(s) (all ages).")
      return 0
    end
    local days = o.days or 7
    if days <= 0 then
      err("Error: --days must be > 0 (got ", util.g(days), "). Use --all to purge every terminal job on purpose.")
      return 1
    end
    out("Deleted ", jobs.gc(days * 86400), " job(s) older than ", util.g(days), " day(s).")
    return 0
  end,
}

-- ------------------------------------------------------------- groups --

local function group_cmds()
  local G = {}
  G.add = {
    usage = "NAME [-d TEXT] [--shared-context TEXT] [--member AGENT]...",
    summary = "Create a group of agents.",
    options = { { "--description", "-d", arg = "TEXT" }, { "--shared-context", arg = "TEXT" },
                { "--member", arg = "AGENT", multi = true } },
    positionals = { "NAME" }, min = 1, max = 1,
    run = function(o, pos)
      local name = pos[1]
      local e = agents.name_error(name)
      if e then err("Error: ", e) return 1 end
      local ok, ce, ws = config.mutate(function(cfg)
        if cfg.groups[name] then return nil, "exists" end
        local members = json.array()
        for _, m in ipairs(o.member) do
          if not cfg.agents[m] then return nil, { missing = m } end
          members[#members + 1] = { agent = m, use_for = "" }
        end
        cfg.groups[name] = { description = o.description or "",
                             shared_context = o.shared_context or "", members = members }
        cfg.group_names[#cfg.group_names + 1] = name
        return #members, true
      end)
      warnings(ws)
      if not ok then
        if ce == "exists" then
          err("Group '", name, "' already exists. Use 'agent-dispatch group remove ", name, "' first.")
          return 1
        elseif type(ce) == "table" and ce.missing then
          err("Error: agent '", ce.missing, "' not found. Add it first: agent-dispatch add ",
              ce.missing, " <directory>")
          return 1
        end
        return save_error(ce)
      end
      out("Added group '", name, "' (", ok, " member(s)).")
      if ok == 0 then
        err("Warning: the group has no members yet; dispatch(group=...) needs members. " ..
            "Recreate it with --member AGENT, or edit agents.yaml.")
      end
      return 0
    end,
  }
  G.list = {
    usage = "", summary = "List groups.",
    run = function()
      local cfg, code = load()
      if not cfg then return code end
      if #cfg.group_names == 0 then
        out("No groups configured. Run: agent-dispatch group add <name> --member <agent>")
        return 0
      end
      for _, name in ipairs(cfg.group_names) do
        local g = cfg.groups[name]
        out("  ", name, " (", #g.members, " member(s))")
        if g.description ~= "" then out("    desc: ", g.description) end
        local ms = {}
        for _, m in ipairs(g.members) do
          ms[#ms + 1] = m.agent .. (cfg.agents[m.agent] and "" or "(unknown)")
        end
        out("    members: ", #ms > 0 and table.concat(ms, ", ") or "(none)")
        out("    shared context: ", util.strip(g.shared_context) ~= "" and "yes" or "no")
        out("")
      end
      return 0
    end,
  }
  G.inspect = {
    usage = "NAME", summary = "Show one group.", positionals = { "NAME" }, min = 1, max = 1,
    run = function(_, pos)
      local cfg, code = load()
      if not cfg then return code end
      local g = cfg.groups[pos[1]]
      if not g then
        err("Group '", pos[1], "' not found. Run 'agent-dispatch group list' to see groups.")
        return 1
      end
      out(pos[1])
      out("  description: ", g.description)
      out("  shared_context:")
      for line in (g.shared_context .. "\n"):gmatch("(.-)\n") do out("    ", line) end
      if #g.members == 0 then
        err("Warning: no members configured.")
      else
        out("  members (", #g.members, "):")
        for _, m in ipairs(g.members) do
          out("    - ", m.agent, cfg.agents[m.agent] and "" or " (unknown)",
              m.use_for ~= "" and (" — " .. m.use_for) or "")
        end
      end
      return 0
    end,
  }
  G.update = {
    usage = "NAME [-d TEXT] [--shared-context TEXT]", summary = "Change a group's texts.",
    options = { { "--description", "-d", arg = "TEXT" }, { "--shared-context", arg = "TEXT" } },
    positionals = { "NAME" }, min = 1, max = 1,
    run = function(o, pos)
      local name = pos[1]
      if not o._given.description and not o._given.shared_context then
        err("Nothing to update. Pass --description and/or --shared-context.")
        return 1
      end
      local ok, e, ws = config.mutate(function(cfg)
        local g = cfg.groups[name]
        if not g then return nil, "missing" end
        local f = {}
        if o._given.description then g.description = o.description; f[#f + 1] = "description" end
        if o._given.shared_context then g.shared_context = o.shared_context; f[#f + 1] = "shared_context" end
        return f, true
      end)
      warnings(ws)
      if not ok then
        if e == "missing" then
          err("Group '", name, "' not found. Run 'agent-dispatch group list' to see groups.")
          return 1
        end
        return save_error(e)
      end
      out("Updated group '", name, "': ", table.concat(ok, ", "))
      return 0
    end,
  }
  G.remove = {
    usage = "NAME", summary = "Delete a group (its agents are untouched).",
    positionals = { "NAME" }, min = 1, max = 1,
    run = function(_, pos)
      local name = pos[1]
      local ok, e, ws = config.mutate(function(cfg)
        if not cfg.groups[name] then return nil, "missing" end
        cfg.groups[name] = nil
        for i, n in ipairs(cfg.group_names) do
          if n == name then table.remove(cfg.group_names, i) break end
        end
        return true, true
      end)
      warnings(ws)
      if not ok then
        if e == "missing" then err("Group '", name, "' not found.") return 1 end
        return save_error(e)
      end
      out("Removed group '", name, "'.")
      return 0
    end,
  }
  return G
end

C.group = { usage = "add|list|inspect|update|remove ...", summary = "Manage groups of agents.",
            sub = group_cmds() }

C.lua = {
  usage = "list | path | cat MODULE | tools",
  summary = "Show the embedded Lua policy modules and where each is loaded from.",
  positionals = { "ACTION", "MODULE" }, min = 1, max = 2,
  run = function(_, pos)
    local action = pos[1]
    if action == "list" or action == "path" then
      -- The directory the module searcher uses (computed once, in C), and
      -- the same two file names it tries, in its order.
      local dir = core.user_lua_dir()
      for _, name in ipairs(core.embedded_list()) do
        local origin = "embedded"
        if dir ~= "" then
          for _, suffix in ipairs({ ".lua", "/init.lua" }) do
            local p = dir .. "/" .. name:gsub("%.", "/") .. suffix
            if origin == "embedded" and core.stat(p) then origin = p end
          end
        end
        out(string.format("%-28s %s", name, origin))
      end
      return 0
    elseif action == "tools" then
      local plugins = require "ad.plugins"
      require("ad.tools").load_builtin()
      out("Tool files in ", plugins.dir(), ":")
      for _, l in ipairs(plugins.loaded) do
        out("  ", l.file, ": tools ", #l.tools > 0 and table.concat(l.tools, ", ") or "(none)",
            "; hooks ", l.hooks)
      end
      for _, p in ipairs(plugins.problems) do out("  PROBLEM ", p.message) end
      if #plugins.loaded == 0 and #plugins.problems == 0 then out("  (none)") end
      return #plugins.problems > 0 and 1 or 0
    elseif action == "cat" or action == "dump" then
      local src = pos[2] and core.embedded(pos[2])
      if not src then err("Error: no embedded module '", tostring(pos[2]), "'.") return 1 end
      io.stdout:write(src)
      return 0
    end
    err("Error: unknown action '", action, "' (use list, path or cat MODULE).")
    return 2
  end,
}

M.ORDER = { "serve", "init", "add", "update", "remove", "list", "describe", "test", "doctor",
            "group", "jobs", "job", "cancel", "gc", "run", "lua" }

function M.usage()
  local lines = { "Usage: " .. PROG .. " [--version] COMMAND [ARGS]...", "",
    "  Delegate tasks from Claude Code to Claude Code agents in other project",
    "  directories.", "", "Commands:" }
  for _, name in ipairs(M.ORDER) do
    lines[#lines + 1] = string.format("  %-10s %s", name, C[name].summary or "")
  end
  lines[#lines + 1] = ""
  lines[#lines + 1] = "Run '" .. PROG .. " COMMAND --help' for a command's options."
  return table.concat(lines, "\n") .. "\n"
end

local function run_command(prefix, name, cmd, argv)
  if cmd.sub then
    local subname = argv[1]
    if subname == nil or subname == "--help" or subname == "-h" then
      local lines = { "Usage: " .. PROG .. " " .. name .. " " .. cmd.usage, "", "Commands:" }
      for _, k in ipairs({ "add", "list", "inspect", "update", "remove" }) do
        if cmd.sub[k] then lines[#lines + 1] = string.format("  %-10s %s", k, cmd.sub[k].summary or "") end
      end
      io.stdout:write(table.concat(lines, "\n"), "\n")
      return subname and 0 or 2
    end
    local sub = cmd.sub[subname]
    if not sub then
      err("Usage: ", PROG, " ", name, " ", cmd.usage)
      err("Error: No such command '", subname, "'.")
      return 2
    end
    return run_command(prefix .. " " .. name, subname, sub, { table.unpack(argv, 2) })
  end
  if cmd.raw then
    if argv[1] == "--help" or argv[1] == "-h" or #argv == 0 then
      -- Asked for: stdout, exit 0. A usage error: stderr, exit 2.
      local out_f = #argv == 0 and io.stderr or io.stdout
      out_f:write(args.help(PROG, name, cmd))
      return #argv == 0 and 2 or 0
    end
    return cmd.run({}, argv)
  end
  local o, pos = args.parse(cmd, argv)
  if not o then
    err("Usage: ", PROG, prefix, " ", name, " ", cmd.usage or "")
    err("Try '", PROG, prefix, " ", name, " --help' for help.")
    err("")
    err("Error: ", pos)
    return 2
  end
  if o.help then
    io.stdout:write(args.help(PROG .. prefix, name, cmd))
    return 0
  end
  return cmd.run(o, pos)
end

function M.main(argv)
  local first = argv[1]
  if first == nil then
    io.stderr:write(M.usage())
    return 2
  end
  if first == "--help" or first == "-h" or first == "help" then
    io.stdout:write(M.usage())
    return 0
  end
  if first == "--version" or first == "-V" then
    out(PROG, " ", core.version)
    return 0
  end
  local cmd = C[first]
  if not cmd then
    err("Usage: ", PROG, " [--version] COMMAND [ARGS]...")
    err("Error: No such command '", first, "'.")
    return 2
  end
  return run_command("", first, cmd, { table.unpack(argv, 2) })
end

return M
