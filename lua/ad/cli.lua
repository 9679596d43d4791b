--- The command-line interface: the command table, usage and dispatch to a
--- command (option parsing and --help from ad.args). The commands live in
--- one module per family - ad.cli.agents (init, add, update, remove, list,
--- describe), ad.cli.test, ad.cli.doctor, ad.cli.groups, ad.cli.jobs (jobs,
--- job, cancel, gc), ad.cli.wait, ad.cli.trace (trace, traces), ad.cli.lua - with what they share in ad.cli.common;
--- serve and run are entries into ad.mcp and ad.run. Each can be
--- overridden on its own. A command is {usage =, summary =, options =,
--- positionals =, min =, max =, run = function(opts, positionals) -> exit
--- status (0 ok, 1 reported error, 2 usage error)}, or {sub = commands},
--- or raw = true (run gets the arguments unparsed).
local core = require "ad.core"
local args = require "ad.cli.args"
local suggest = require "ad.infra.suggest"

local M = {}
local PROG = "agent-dispatch"

local function out(...) io.stdout:write(...) io.stdout:write("\n") end
local function err(...) io.stderr:write(...) io.stderr:write("\n") end

M.commands = {}
local C = M.commands

C.serve = {
  usage = "", summary = "Run the MCP server on stdio (what Claude Code starts).",
  run = function()
    return require("ad.protocol.mcp").serve()
  end,
}

C.run = {
  usage = "[--json] [--verbose] [--timeout SECONDS] SCRIPT.lua [ARGS...] (options may follow the script; -- ends them)",
  summary = "Run a Lua batch script with the agent_dispatch module.",
  -- Parsed by ad.run (they may follow the script); listed here for --help.
  options = {
    { "--json", help = "Print the script's return value as JSON on stdout (the script's print goes to stderr)." },
    { "--verbose", "-v", help = "Show each agent's streamed text on the board, and the full Lua call stack of a script error." },
    { "--timeout", arg = "SECONDS", help = "Stop the script and its dispatches after SECONDS (exit 124)." },
  },
  raw = true,
  run = function(_, pos)
    return require("ad.cli.run").main(pos)
  end,
}

-- A command family that cannot be loaded (a broken override in the
-- user's Lua directory) takes only its own commands away: the others,
-- doctor and `lua list` among them, still work and say what is wrong.
M.broken = {}
for _, family in ipairs({ "agents", "test", "dispatch", "doctor", "groups", "jobs", "wait", "trace",
    "lua", "steer", "approve", "live" }) do
  local ok, cmds = pcall(require, "ad.cli." .. family)
  if ok and type(cmds) ~= "table" then
    ok, cmds = false, "it returned " .. type(cmds) .. ", not a table of commands"
  end
  if ok then
    for name, cmd in pairs(cmds) do C[name] = cmd end
  else
    M.broken[#M.broken + 1] = "ad/cli/" .. family .. ".lua: " ..
      tostring(type(cmds) == "table" and cmds.message or cmds):gsub("\n.*", "")
  end
end

-- The note on the families that could not be loaded, or nil.
local function broken_note()
  if #M.broken == 0 then return nil end
  return "Some commands are unavailable: their module could not be loaded (" ..
    table.concat(M.broken, "; ") .. "). An override in your Lua directory? '" .. PROG ..
    " lua list' shows the overrides."
end

M.ORDER = { "serve", "init", "add", "update", "remove", "list", "describe", "test", "dispatch", "doctor",
            "group", "jobs", "job", "wait", "cancel", "steer", "approve", "deny", "gc", "trace",
            "traces", "live", "run", "lua" }

function M.usage()
  local lines = { "Usage: " .. PROG .. " [--version] COMMAND [ARGS]...", "",
    "  Delegate tasks from Claude Code to Claude Code agents in other project",
    "  directories.", "", "Commands:" }
  for _, name in ipairs(M.ORDER) do
    if C[name] then lines[#lines + 1] = string.format("  %-10s %s", name, C[name].summary or "") end
  end
  if broken_note() then
    lines[#lines + 1] = ""
    lines[#lines + 1] = broken_note()
  end
  lines[#lines + 1] = ""
  lines[#lines + 1] = "Run '" .. PROG .. " COMMAND --help' (or '" .. PROG ..
    " help COMMAND') for a command's options."
  return table.concat(lines, "\n") .. "\n"
end

local SUB_ORDER = { "add", "list", "inspect", "update", "remove" }

-- The names of a command table, in help order when there is one.
local function names_of(t, order)
  local l = {}
  for _, k in ipairs(order) do if t[k] then l[#l + 1] = k end end
  return l
end

-- The help text of a command family (a command with subcommands).
local function family_help(name, cmd)
  local lines = { "Usage: " .. PROG .. " " .. name .. " " .. cmd.usage, "" }
  if cmd.summary then lines[#lines + 1] = "  " .. cmd.summary; lines[#lines + 1] = "" end
  lines[#lines + 1] = "Commands:"
  for _, k in ipairs(names_of(cmd.sub, SUB_ORDER)) do
    lines[#lines + 1] = string.format("  %-10s %s", k, cmd.sub[k].summary or "")
  end
  lines[#lines + 1] = ""
  lines[#lines + 1] = "Run '" .. PROG .. " " .. name .. " COMMAND --help' for a command's options."
  return table.concat(lines, "\n") .. "\n"
end

-- A usage error for an unknown command name among candidates.
local function no_such_command(usage, name, candidates)
  err("Usage: ", usage)
  err("Error: No such command '", name, "'.", suggest.hint(name, candidates))
  return 2
end

local function run_command(prefix, name, cmd, argv)
  if cmd.sub then
    local subname = argv[1]
    if subname == nil or subname == "--help" or subname == "-h" then
      -- Asked for: stdout, exit 0. A missing subcommand: stderr, exit 2.
      (subname and io.stdout or io.stderr):write(family_help(name, cmd))
      return subname and 0 or 2
    end
    local sub = cmd.sub[subname]
    if not sub then
      return no_such_command(PROG .. " " .. name .. " " .. cmd.usage, subname, names_of(cmd.sub, SUB_ORDER))
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
  -- Ctrl-C and the other shutdown signals stop the children it started.
  return require("ad.cli.interrupt").guard(cmd.run, o, pos)
end

-- `help [COMMAND [SUBCOMMAND]]`: the same text as COMMAND --help.
local function help(argv)
  local name = argv[1]
  if name == nil or name == "help" or name == "--help" or name == "-h" then
    io.stdout:write(M.usage())
    return 0
  end
  local cmd = C[name]
  if not cmd then return no_such_command(PROG .. " help [COMMAND [SUBCOMMAND]]", name, M.ORDER) end
  if not cmd.sub then
    io.stdout:write(args.help(PROG, name, cmd))
    return 0
  end
  local subname = argv[2]
  if subname == nil then
    io.stdout:write(family_help(name, cmd))
    return 0
  end
  local sub = cmd.sub[subname]
  if not sub then
    return no_such_command(PROG .. " help " .. name .. " [SUBCOMMAND]", subname, names_of(cmd.sub, SUB_ORDER))
  end
  io.stdout:write(args.help(PROG .. " " .. name, subname, sub))
  return 0
end

function M.main(argv)
  local first = argv[1]
  if first == nil then
    io.stderr:write(M.usage())
    return 2
  end
  if first == "--help" or first == "-h" then
    io.stdout:write(M.usage())
    return 0
  end
  if first == "help" then return help({ table.unpack(argv, 2) }) end
  if first == "--version" or first == "-V" then
    out(PROG, " ", core.version)
    return 0
  end
  local cmd = C[first]
  local note = broken_note()
  local known = false
  for _, n in ipairs(M.ORDER) do known = known or n == first end
  if not cmd and note and known then
    err("Error: '", first, "' is not available. ", note)
    return 1
  end
  if not cmd then return no_such_command(PROG .. " [--version] COMMAND [ARGS]...", first, M.ORDER) end
  if note then err("Warning: ", note) end
  return run_command("", first, cmd, { table.unpack(argv, 2) })
end

return M
