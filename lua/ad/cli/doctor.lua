--- The `doctor` command of the CLI: checks the environment (claude, its
--- version and login state, OpenSSL's libcrypto), the config (and its unknown keys), the MCP
--- registration, the jobs directory, tool files and overrides, every
--- agent's directory and every group, one [OK]/[WARN]/[FAIL] line each, and exits 1 when any
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

-- The Claude Code version the test suite runs against (tests/real/
-- install-claude.sh pins the same one).
local CLAUDE_TESTED = "2.1.328"
local MIN_FREE = 100 * 1024 * 1024 -- bytes: below this, job records may not fit

-- Runs argv (bounded), returns its stdout lines and exit info, or nil.
local function capture(argv)
  local p = core.proc.spawn{ argv = argv, timeout = 10 }
  if not p then return nil end
  local lines = {}
  while true do local l = p:read_line() if not l then break end lines[#lines + 1] = l end
  local info = p:wait()
  p:close()
  return lines, info
end

local function claude_binary(r)
  local override = os.getenv("AGENT_DISPATCH_CLAUDE")
  if override and override ~= "" then
    local path = core.sys.which(override)
    if path then r.ok("claude CLI: " .. path .. " (from AGENT_DISPATCH_CLAUDE)") return path end
    r.fail("AGENT_DISPATCH_CLAUDE=" .. override .. " does not name an executable",
      "Fix: point AGENT_DISPATCH_CLAUDE to the claude binary, or unset it to use claude from PATH")
    return nil
  end
  local claude = core.sys.which("claude")
  if claude then r.ok("claude CLI: " .. claude)
  else r.fail("claude CLI not found on PATH", "Install: npm install -g @anthropic-ai/claude-code") end
  return claude
end

local function claude_version(r, claude)
  local lines, info = capture({ claude, "--version" })
  local v = lines and info.exit_code == 0 and (lines[1] or ""):match("^(%d+%.%d+%.%d+)")
  if not v then return r.warn("Could not read the Claude Code version (" .. claude .. " --version)") end
  if v == CLAUDE_TESTED then r.ok("Claude Code " .. v .. " (the version the tests run against)")
  else
    r.warn("Claude Code " .. v .. " is installed; agent-dispatch is tested with " .. CLAUDE_TESTED,
      "Other versions usually work; if dispatches fail oddly: npm install -g @anthropic-ai/claude-code@" ..
      CLAUDE_TESTED)
  end
end

-- `claude auth status` answers offline with JSON {loggedIn =, authMethod =}.
local function claude_login(r, claude)
  local lines, info = capture({ claude, "auth", "status" })
  local ok, st = pcall(require("ad.infra.json").decode, lines and table.concat(lines, "\n") or "")
  if not ok or type(st) ~= "table" or st.loggedIn == nil then
    return r.warn("Could not read the Claude Code login state (" .. claude .. " auth status" ..
      (info and info.timed_out and " timed out)" or ")"))
  end
  if st.loggedIn == true then
    r.ok("Claude Code is logged in (" .. tostring(st.authMethod or "unknown method") .. ")")
  else
    r.fail("Claude Code is not logged in: every dispatch would fail",
      "Run: claude, then /login (or set ANTHROPIC_API_KEY)")
  end
end

-- libcrypto is loaded (dlopen) on first use, by the permission relay's
-- requestState (ad.protocol.mcp_mrtr): nothing else fails without it.
local function libcrypto(r)
  if pcall(core.crypto.sha256, "") then
    return r.ok("OpenSSL's libcrypto loads (the permission relay's input_required)")
  end
  r.warn("Cannot load OpenSSL's libcrypto (libcrypto.so.3, or libcrypto.so)",
    "Without it, 2026-07-28 clients get awaiting_approval (answer with dispatch_approve) " ..
    "instead of an input_required result for an agent's permission request",
    "Install: apt install libssl3 (or your system's OpenSSL 3 package)")
end

local function environment(r)
  out("Environment")
  local claude = claude_binary(r)
  if claude then
    claude_version(r, claude)
    claude_login(r, claude)
  end
  if core.sys.which(PROG) then r.ok("agent-dispatch: " .. core.sys.which(PROG))
  else r.warn("agent-dispatch not on PATH (MCP server still works via absolute path)") end
  libcrypto(r)
  return claude
end

-- Unknown keys are ignored by the loader: a typo'd permission key leaves
-- an agent with more permissions than its author wrote, hence a FAIL.
-- "agents.web" -> "agent 'web'": where a key sits, in the words of the file.
local function place(where)
  if where == "" then return "the top level" end
  local a = where:match("^agents%.(.+)$")
  if a then return "agent '" .. a .. "'" end
  local g = where:match("^groups%.([^.]+)$")
  if g then return "group '" .. g .. "'" end
  return where
end

local function unknown_key_checks(r, path)
  for _, u in ipairs(config.unknown_keys(path) or {}) do
    local msg = ("Unknown key '%s' in %s%s"):format(u.key, place(u.where),
      u.suggestion and (" (did you mean '" .. u.suggestion .. "'?)") or "")
    if u.permission then
      r.fail(msg, "It is ignored: the agent keeps the inherited permissions. Fix the key in " .. path)
    else
      r.warn(msg, "It is ignored. Fix or remove it in " .. path)
    end
  end
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
  if cfg then unknown_key_checks(r, path) end
  return cfg
end

local function registration(r, claude)
  out("MCP registration")
  if not claude then return r.warn("Skipped (claude CLI missing)") end
  local lines, info = capture({ claude, "mcp", "list" })
  if not lines then return r.warn("Could not check MCP registration: cannot run " .. claude) end
  local found = false
  for _, l in ipairs(lines) do
    if l:match("^agent%-dispatch[:%s]") then found = true end
  end
  if info.timed_out then r.warn("Could not check MCP registration: claude mcp list timed out")
  elseif info.exit_code == 0 and found then r.ok("agent-dispatch is registered with Claude Code")
  else r.warn("agent-dispatch is not registered with Claude Code", "Run: agent-dispatch init") end
end

-- The jobs directory: trusted (owner, not writable by others), private,
-- no job left "running" by a process that is gone, room for records.
local function jobs_checks(r)
  out("Jobs")
  local jobs = require "ad.storage.jobs"
  local ok, dir = pcall(jobs.dir)
  if not ok then return r.fail(tostring(type(dir) == "table" and dir.message or dir)) end
  local kind, _, mode = core.fs.stat(dir)
  if not kind then return r.ok("Jobs directory: " .. dir .. " (created on first use)") end
  if mode & 63 ~= 0 then -- 0077
    r.warn(("Jobs directory %s is readable by others (mode %o): job records hold tasks and results")
      :format(dir, mode), "Run: chmod 700 " .. dir)
  else
    r.ok(("Jobs directory: %s (mode %o)"):format(dir, mode))
  end
  local lok, running = pcall(jobs.list, "running", nil, true)
  if not lok then return r.fail(tostring(type(running) == "table" and running.message or running)) end
  local stale = {}
  for _, rec in ipairs(running) do
    if jobs.owner_gone(rec) and not jobs.process_alive(rec) then stale[#stale + 1] = rec end
  end
  if #stale > 0 then
    -- cancel settles a record that names its (dead) child; one that names
    -- none is settled by the next server start (jobs.recover_stale).
    local ids, fixes = {}, {}
    for _, rec in ipairs(stale) do
      ids[#ids + 1] = rec.id
      if type(rec.process) == "table" then fixes[#fixes + 1] = "agent-dispatch cancel " .. rec.id end
    end
    r.warn(#stale .. " job(s) marked running, but the agent-dispatch process that ran them is gone: " ..
      table.concat(ids, ", "), #fixes > 0 and ("Run: " .. table.concat(fixes, " && ")) or
      "They are marked failed when an agent-dispatch server next starts")
  end
  local free = core.fs.free_space(dir)
  if free and free < MIN_FREE then
    r.warn(("Only %.1f MB free on the file system of %s"):format(free / 1048576, dir),
      "Free some space, or delete finished jobs: agent-dispatch gc")
  elseif free then
    r.ok(("%.0f MB free for job records"):format(free / 1048576))
  end
end

-- Lua files in the user directory that replace no shipped module: an
-- override left at a module's old place (modules live in layer folders:
-- ad.aggregate is ad.domain.aggregate) silently does nothing. Helper
-- modules of the user's own are legitimate, hence a warning. Returns how
-- many files it reported.
local function stray_lua_files(r, dir)
  if dir == "" or core.fs.stat(dir) ~= "dir" then return 0 end
  local shipped, by_leaf = {}, {}
  for _, name in ipairs(core.embed.list()) do
    shipped[name] = true
    local leaf = name:match("([^.]+)$")
    by_leaf[leaf] = by_leaf[leaf] or name
  end
  local n = 0
  local function walk(sub, depth)
    local names = core.fs.listdir(dir .. sub) or {}
    table.sort(names)
    for _, f in ipairs(names) do
      local rel = sub .. "/" .. f
      local kind = core.fs.stat(dir .. rel)
      if kind == "dir" and depth < 8 then
        walk(rel, depth + 1)
      elseif kind == "file" and f:match("%.lua$") then
        local name = rel:sub(2):gsub("%.lua$", ""):gsub("/init$", ""):gsub("/", ".")
        if not shipped[name] then
          n = n + 1
          local moved = by_leaf[name:match("([^.]+)$")]
          r.warn(dir .. rel .. " overrides no shipped module (" .. name .. ")",
            moved and ("If it is meant to replace " .. moved .. ", move it to " .. dir ..
              "/" .. moved:gsub("%.", "/") .. ".lua") or
            "Fine if it is a module of your own that your tool files require")
        end
      end
    end
  end
  walk("", 0)
  return n
end

-- Tool files (same problems and words as `agent-dispatch lua tools`) and
-- overrides of the embedded modules in the user Lua directory (refused
-- when someone else could have written them, reported when they do not
-- compile).
local function extension_checks(r)
  out("Extensions")
  local plugins = require "ad.domain.plugins"
  local tok, terr = pcall(function() require("ad.tools").load_builtin() end)
  if not tok then r.fail("Tool files could not be loaded: " .. tostring(terr)) end
  for _, l in ipairs(plugins.loaded) do
    r.ok(l.file .. ": tools " .. (#l.tools > 0 and table.concat(l.tools, ", ") or "(none)") ..
      "; hooks " .. l.hooks)
  end
  for _, p in ipairs(plugins.problems) do r.fail(p.message) end
  local dir = core.embed.user_lua_dir()
  local n = 0
  for _, name in ipairs(dir ~= "" and core.embed.list() or {}) do
    for _, suffix in ipairs({ ".lua", "/init.lua" }) do
      local path = dir .. "/" .. name:gsub("%.", "/") .. suffix
      if core.fs.stat(path) then
        n = n + 1
        local src, why, code = core.fs.read_trusted(path, 4 * 1024 * 1024)
        local chunk, lerr
        if src then chunk, lerr = load(src, "@" .. path, "t") end
        if code == "untrusted" then r.fail("refusing " .. path .. ": " .. why)
        elseif not src then r.fail("cannot read " .. path .. ": " .. tostring(why))
        elseif not chunk then r.fail("error loading module '" .. name .. "': " .. tostring(lerr))
        else r.ok("override of " .. name .. ": " .. path) end
        break
      end
    end
  end
  n = n + stray_lua_files(r, dir)
  if #plugins.loaded == 0 and #plugins.problems == 0 and n == 0 then
    r.ok("No tool files or overrides")
  end
end

-- One ssh round trip per host of a remote agent: reachable without a
-- prompt (BatchMode), claude there and its version, logged in there.
-- Returns true when the host answered.
local function host_check(r, host, cfg)
  local got, why, refused = require("ad.domain.remote_probe").check_host(host, cfg.settings)
  if not got then
    if refused then
      r.fail("host " .. host .. ": reachable, but a login without a prompt (BatchMode) failed: " .. why,
        "Fix: install a key for it (ssh-copy-id " .. host .. ") and load it in ssh-agent; " ..
        "agent-dispatch never answers a password or passphrase prompt")
    else
      r.fail("host " .. host .. ": unreachable - " .. why,
        "Check: ssh -o BatchMode=yes " .. host .. " true")
    end
    return false
  end
  r.ok("host " .. host .. ": reachable with BatchMode (no prompt)")
  if not got.path then
    r.fail("host " .. host .. ": claude not found on the PATH of a non-interactive ssh session",
      "Fix: install Claude Code there, or make it reachable from the PATH that " ..
      "`ssh " .. host .. " 'command -v claude'` sees")
    return true
  end
  local v = (got.version or ""):match("(%d+%.%d+%.%d+)")
  if v then r.ok("host " .. host .. ": claude " .. v .. " (" .. got.path .. ")")
  else r.warn("host " .. host .. ": could not read the Claude Code version (" .. got.path .. ")") end
  if not got.auth or got.auth.loggedIn == nil then
    r.warn("host " .. host .. ": could not read the Claude Code login state (claude auth status)")
  elseif got.auth.loggedIn == true then
    r.ok("host " .. host .. ": Claude Code is logged in (" .. tostring(got.auth.authMethod or "unknown method") .. ")")
  else
    r.fail("host " .. host .. ": Claude Code is not logged in there: every dispatch to it would fail",
      "Run on " .. host .. ": claude, then /login (or set ANTHROPIC_API_KEY there)")
  end
  return true
end

local function agent_checks(r, cfg)
  out("Agents")
  if not cfg then return r.warn("Skipped (config could not be loaded)") end
  if #cfg.agent_names == 0 then
    return r.warn("No agents configured. Add one: agent-dispatch add <name> <directory>")
  end
  local hosts = {}
  for _, name in ipairs(cfg.agent_names) do
    local a = cfg.agents[name]
    local h, herr
    if a.host then
      if not hosts[a.host] then
        hosts[a.host] = host_check(r, a.host, cfg)
      end
    end
    if a.host and not hosts[a.host] then
      h = "skip"
    elseif a.host then
      local src = require("ad.domain.introspect").source(a, cfg.settings)
      h = src.health()
      if h == "UNREACHABLE" or h == "UNREADABLE" then h, herr = nil, src.error or "unreadable" end
    else
      h, herr = core.project.health(a.directory)
    end
    if h == "skip" then
      r.fail(name .. ": " .. a.host .. ":" .. a.directory .. " not checked (host unreachable)")
    elseif h == true and a.host then
      r.ok(name .. ": " .. a.host .. ":" .. a.directory)
    elseif h == true then
      local files = {}
      for _, f in ipairs({ "CLAUDE.md", ".mcp.json" }) do
        if core.project.has(a.directory, f) then files[#files + 1] = f end
      end
      r.ok(name .. ": " .. a.directory .. (#files > 0 and (" [" .. table.concat(files, ", ") .. "]") or ""))
    elseif h == false then
      r.fail(name .. ": directory missing - " .. (a.host and (a.host .. ":") or "") .. a.directory)
    else r.fail(name .. ": directory unreadable - " .. tostring(herr)) end
    local flag = require("ad.domain.agents").agent_flag_problem(a)
    if flag then
      r.fail(name .. ": " .. flag, "Fix it: agent-dispatch update " .. name ..
        " --model ... / --allowed-tools ... (or edit " .. require("ad.storage.config").path() .. ")")
    end
  end
end

local function group_checks(r, cfg)
  out("Groups")
  if not cfg then return r.warn("Skipped (config could not be loaded)") end
  if #cfg.group_names == 0 then return r.ok("No groups configured") end
  for _, g in ipairs(cfg.group_names) do
    local grp = cfg.groups[g]
    local unknown = config.unknown_members(cfg, grp)
    if #unknown > 0 then
      local fix = { "Fix: agent-dispatch group update " .. g }
      for _, m in ipairs(unknown) do fix[#fix + 1] = "--remove-member " .. m end
      r.fail(g .. ": unknown member(s): " .. table.concat(unknown, ", "), table.concat(fix, " "))
    elseif #grp.members == 0 then
      r.warn(g .. ": no members configured", "Fix: agent-dispatch group update " .. g ..
        " --add-member AGENT")
    else r.ok(("%s: %d %s"):format(g, #grp.members, #grp.members == 1 and "member" or "members")) end
  end
end

local C = {}

C.doctor = {
  usage = "", summary = "Check claude, the config, registration, jobs, tool files, agents and groups.",
  run = function()
    local r = report()
    local claude = environment(r)
    local cfg = config_check(r)
    registration(r, claude)
    jobs_checks(r)
    extension_checks(r)
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
