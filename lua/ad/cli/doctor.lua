--- The `doctor` command of the CLI: checks the environment, the config,
--- the jobs directory, the MCP registration, every agent's directory and
--- every group, one [OK]/[WARN]/[FAIL] line each, and exits 1 when any
--- check failed. Returns {doctor = command}.
local core = require "ad.core"
local config = require "ad.storage.config"
local render = require "ad.infra.errors.render"
local common = require "ad.cli.common"

local out, PROG = common.out, common.PROG

-- The check lines and their tally.
local function report()
  local r = { issues = 0, warns = 0 }
  function r.ok(msg) out("  [OK] ", msg) end
  function r.warn(msg, ...) r.warns = r.warns + 1; out("  [WARN] ", msg)
    for _, l in ipairs({ ... }) do out("    ", l) end end
  function r.fail(msg, ...) r.issues = r.issues + 1; out("  [FAIL] ", msg)
    for _, l in ipairs({ ... }) do out("    ", l) end end
  return r
end

local function environment(r)
  out("Environment")
  local claude = require("ad.domain.runner").claude_path()
  if claude then r.ok("claude CLI: " .. claude)
  else r.fail("claude CLI not found on PATH", "Install: npm install -g @anthropic-ai/claude-code") end
  if core.sys.which(PROG) then r.ok("agent-dispatch: " .. core.sys.which(PROG))
  else r.warn("agent-dispatch not on PATH (MCP server still works via absolute path)") end
  return claude
end

-- Returns the config, or nil when it is missing or broken.
local function config_check(r)
  out("Config")
  local path = config.path()
  local cfg, e
  if not core.fs.stat(path) then
    r.warn("Config not found: " .. path, "Run: agent-dispatch init")
  else
    cfg, e = config.load(path)
    if cfg then
      r.ok(("Config: %s (%d %s)"):format(path, #cfg.agent_names, #cfg.agent_names == 1 and "agent" or "agents"))
    else
      local msg, detail = render.load(e)
      r.fail(msg:gsub("^%l", string.upper), detail)
    end
  end
  local jok, jerr = pcall(require("ad.storage.jobs").dir)
  if not jok then r.fail(tostring(type(jerr) == "table" and jerr.message or jerr)) end
  return cfg
end

local function registration(r, claude)
  out("MCP registration")
  if not claude then return r.warn("Skipped (claude CLI missing)") end
  local p = core.proc.spawn{ argv = { claude, "mcp", "list" }, timeout = 10 }
  if not p then return r.warn("Could not check MCP registration: cannot run " .. claude) end
  local lines = {}
  while true do local l = p:read_line() if not l then break end lines[#lines + 1] = l end
  local info = p:wait()
  p:close()
  local found = false
  for _, l in ipairs(lines) do
    if l:match("^agent%-dispatch[:%s]") then found = true end
  end
  if info.timed_out then r.warn("Could not check MCP registration: claude mcp list timed out")
  elseif info.exit_code == 0 and found then r.ok("agent-dispatch is registered with Claude Code")
  else r.warn("agent-dispatch is not registered with Claude Code", "Run: agent-dispatch init") end
end

local function agent_checks(r, cfg)
  out("Agents")
  if not cfg then return r.warn("Skipped (config could not be loaded)") end
  if #cfg.agent_names == 0 then
    return r.warn("No agents configured. Add one: agent-dispatch add <name> <directory>")
  end
  for _, name in ipairs(cfg.agent_names) do
    local a = cfg.agents[name]
    local h, herr = core.project.health(a.directory)
    if h == true then
      local files = {}
      for _, f in ipairs({ "CLAUDE.md", ".mcp.json" }) do
        if core.project.has(a.directory, f) then files[#files + 1] = f end
      end
      r.ok(name .. ": " .. a.directory .. (#files > 0 and (" [" .. table.concat(files, ", ") .. "]") or ""))
    elseif h == false then r.fail(name .. ": directory missing - " .. a.directory)
    else r.fail(name .. ": directory unreadable - " .. tostring(herr)) end
  end
end

local function group_checks(r, cfg)
  out("Groups")
  if not cfg then return r.warn("Skipped (config could not be loaded)") end
  if #cfg.group_names == 0 then return r.ok("No groups configured") end
  for _, g in ipairs(cfg.group_names) do
    local grp = cfg.groups[g]
    local unknown = config.unknown_members(cfg, grp)
    local fix = "Fix by recreating: agent-dispatch group remove " .. g ..
      " && agent-dispatch group add " .. g .. " --member ... (or edit agents.yaml)"
    if #unknown > 0 then r.fail(g .. ": unknown member(s): " .. table.concat(unknown, ", "), fix)
    elseif #grp.members == 0 then r.warn(g .. ": no members configured", fix)
    else r.ok(("%s: %d %s"):format(g, #grp.members, #grp.members == 1 and "member" or "members")) end
  end
end

local C = {}

C.doctor = {
  usage = "", summary = "Check the environment, config, registration, agents and groups.",
  run = function()
    local r = report()
    local claude = environment(r)
    local cfg = config_check(r)
    registration(r, claude)
    agent_checks(r, cfg)
    group_checks(r, cfg)
    out("Summary")
    if r.issues == 0 and r.warns == 0 then
      out("  All checks passed.")
    else
      local parts = {}
      if r.issues > 0 then parts[#parts + 1] = r.issues .. (r.issues == 1 and " issue" or " issues") end
      if r.warns > 0 then parts[#parts + 1] = r.warns .. (r.warns == 1 and " warning" or " warnings") end
      out("  ", table.concat(parts, ", "))
    end
    return r.issues > 0 and 1 or 0
  end,
}

return C
