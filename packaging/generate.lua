--- Build-time generator, run by the built binary (agent-dispatch run
--- packaging/generate.lua KIND [ARGS]): the man pages and the shell
--- completions come from the very command specs --help renders (ad.cli,
--- ad.args), so they cannot drift from it.
---   man1                       agent-dispatch(1) on stdout
---   man7 LUA-API.md            agent-dispatch-lua(7) from docs/lua-api.md
---   bash|zsh|fish NAMES.lua    completion script; NAMES.lua is where the
---                              helper that lists agent, group and job
---                              names is installed, relative to the
---                              directory of the binary
local cli = require "ad.cli"
local kind, arg1 = ...

local PROG = "agent-dispatch"
local out = {}
local function w(...) for _, s in ipairs({ ... }) do out[#out + 1] = s end end

-- Every command as {path = "group add", spec = cmd}, in --help order.
local function commands()
  local list = {}
  for _, name in ipairs(cli.ORDER) do
    local c = cli.commands[name]
    list[#list + 1] = { path = name, spec = c, name = name }
    if c.sub then
      local subs = {}
      for k in pairs(c.sub) do subs[#subs + 1] = k end
      table.sort(subs)
      for _, k in ipairs(subs) do
        list[#list + 1] = { path = name .. " " .. k, spec = c.sub[k], name = name, sub = k }
      end
    end
  end
  return list
end

local function options(spec)
  local o = {}
  for _, opt in ipairs(spec.options or {}) do o[#o + 1] = opt end
  o[#o + 1] = { "--help", "-h", help = "Show the command's help and exit." }
  return o
end

-- roff text: escape backslashes, hyphens of options, and a leading . or '.
local function roff(s)
  s = s:gsub("\\", "\\e"):gsub("%-", "\\-")
  if s:match("^[.']") then s = "\\&" .. s end
  return s
end

local function man1()
  local date = os.date("!%Y-%m-%d", tonumber(os.getenv("SOURCE_DATE_EPOCH")) or os.time())
  w('.TH AGENT\\-DISPATCH 1 "', date, '" "agent-dispatch ', require("ad.core").version,
    '" "User Commands"\n')
  w(".SH NAME\nagent\\-dispatch \\- delegate tasks from Claude Code to Claude Code agents in other project directories\n")
  w(".SH SYNOPSIS\n.B agent\\-dispatch\n[\\-\\-version] COMMAND [ARGS]...\n")
  w(".SH DESCRIPTION\n", roff("agent-dispatch is an MCP server (agent-dispatch serve, started by Claude Code), " ..
    "a command line for its agents, groups and jobs, and a runner of Lua batch scripts. " ..
    "Every command prints its own help with --help; this page is generated from the same text."), "\n")
  w(".SH OPTIONS\n.TP\n.B \\-\\-version, \\-V\nPrint the version, the commit and the Lua, libuv and libyaml versions linked in.\n")
  w(".TP\n.B \\-\\-help, \\-h\nList the commands.\n")
  w(".SH COMMANDS\n")
  for _, c in ipairs(commands()) do
    local s = c.spec
    w(".SS ", roff(c.path), "\n.B ", roff(PROG .. " " .. c.path), "\n", roff(s.usage or ""), "\n.PP\n",
      roff(s.summary or ""), "\n")
    if not s.sub then
      for _, o in ipairs(options(s)) do
        w(".TP\n.B ", roff(o[1] .. (o[2] and (", " .. o[2]) or "")), o.arg and (" \\fI" .. roff(o.arg) .. "\\fR") or "",
          "\n", roff(o.help or ""), o.choices and roff(" One of: " .. table.concat(o.choices, ", ") .. ".") or "", "\n")
      end
    end
  end
  w(".SH ENVIRONMENT\n")
  for _, e in ipairs({
    { "AGENT_DISPATCH_CONFIG", "The config file (default ~/.config/agent-dispatch/agents.yaml; XDG_CONFIG_HOME is not consulted)." },
    { "AGENT_DISPATCH_JOBS_DIR", "The jobs directory (default jobs/ next to the config)." },
    { "AGENT_DISPATCH_TOOLS_DIR", "The tool files directory (default tools/ next to the config)." },
    { "AGENT_DISPATCH_USER_LUA_DIR", "Overrides of the policy modules (default lua/ next to the config)." },
    { "AGENT_DISPATCH_CLAUDE", "The claude executable (default: claude on PATH)." },
  }) do w(".TP\n.B ", roff(e[1]), "\n", roff(e[2]), "\n") end
  w(".SH EXIT STATUS\n0 success, 1 a reported error, 2 a usage error, 130 interrupted. ",
    roff("wait: 0 every job succeeded, 1 one failed or was cancelled, 124 the --timeout passed first."), "\n")
  w(".SH SEE ALSO\n.BR agent\\-dispatch\\-lua (7),\n.BR claude (1)\n")
end

-- docs/lua-api.md as roff: headings, paragraphs, bullets, code blocks;
-- tables and code are kept as preformatted text.
local function man7(md)
  local f = assert(io.open(md))
  local text = f:read("a")
  f:close()
  local function inline(s)
    s = roff(s)
    s = s:gsub("%*%*(.-)%*%*", "\\fB%1\\fR"):gsub("`([^`]*)`", "\\fB%1\\fR")
    return s
  end
  w('.TH AGENT\\-DISPATCH\\-LUA 7 "" "agent-dispatch ', require("ad.core").version, '" "agent-dispatch"\n')
  w(".SH NAME\nagent\\-dispatch\\-lua \\- the Lua API of agent\\-dispatch scripts, tools and hooks\n")
  local code, pre = false, false
  for line in (text .. "\n"):gmatch("(.-)\n") do
    if line:match("^```") then
      code = not code
      w(code and ".PP\n.nf\n.RS 4\n" or ".RE\n.fi\n")
    elseif code then
      w(roff(line) == "" and "\\&" or roff(line), "\n")
    elseif line:match("^|") then
      if not pre then w(".PP\n.nf\n") pre = true end
      w(inline(line), "\n")
    else
      if pre then w(".fi\n") pre = false end
      local h1 = line:match("^# (.*)")
      local h2 = line:match("^##+ (.*)")
      local item = line:match("^%s*[-*] (.*)")
      if h1 then -- the title: the NAME section says it
      elseif h2 then w(".SH ", inline(h2):upper(), "\n")
      elseif item then w(".IP \\(bu 2\n", inline(item), "\n")
      elseif line:match("^%s*$") then w(".PP\n")
      else w(inline((line:gsub("^%s+", ""))), "\n") end
    end
  end
  if pre then w(".fi\n") end
  w(".SH SEE ALSO\n.BR agent\\-dispatch (1)\n")
end

-- Completions: the words of each command (subcommands, options), and
-- which positionals name an agent, a group or a job.
local NAMES = { add = "", update = "agent", remove = "agent", describe = "agent", test = "agent",
  job = "job", cancel = "job", wait = "job", steer = "job", approve = "job", deny = "job",
  dispatch = "agent" }
local SUB_NAMES = { inspect = "group", update = "group", remove = "group" }
local VALUE_NAMES = { ["--member"] = "agent", ["--add-member"] = "agent", ["--remove-member"] = "agent",
  ["--group"] = "group", ["--agent"] = "agent" }

local function words(c)
  local ws = {}
  if c.spec.sub then
    for _, x in ipairs(commands()) do
      if x.name == c.name and x.sub then ws[#ws + 1] = x.sub end
    end
  else
    for _, o in ipairs(options(c.spec)) do ws[#ws + 1] = o[1]; if o[2] then ws[#ws + 1] = o[2] end end
  end
  if c.name == "lua" then for _, a in ipairs({ "list", "path", "cat", "tools" }) do ws[#ws + 1] = a end end
  return table.concat(ws, " ")
end

local function valued(c)
  local v = {}
  for _, o in ipairs(c.spec.options or {}) do
    if o.arg then v[#v + 1] = o[1]; if o[2] then v[#v + 1] = o[2] end end
  end
  return v
end

local function names_of(c)
  if c.sub then return SUB_NAMES[c.sub] or "" end
  return NAMES[c.name] or ""
end

local function bash(helper)
  w("# bash completion for agent-dispatch (generated from its --help)\n")
  w("_agent_dispatch_names() {\n  local b\n  b=$(command -v agent-dispatch) || return\n",
    "  agent-dispatch run \"${b%/*}/", helper, "\" \"$1\" 2>/dev/null\n}\n")
  w("_agent_dispatch() {\n  local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}\n")
  w("  local cmd=${COMP_WORDS[1]} sub=${COMP_WORDS[2]} words='' names='' valued=''\n")
  w("  if ((COMP_CWORD == 1)); then\n    COMPREPLY=($(compgen -W '--version --help help ",
    table.concat(cli.ORDER, " "), "' -- \"$cur\"))\n    return\n  fi\n")
  w("  case \"$cmd $sub\" in\n")
  for _, c in ipairs(commands()) do
    if c.sub then
      w("    '", c.path, "') words='", words(c), "' names='", names_of(c), "' valued='",
        table.concat(valued(c), " "), "' ;;\n")
    end
  end
  w("  esac\n  if [[ -z $words ]]; then\n    case \"$cmd\" in\n")
  for _, c in ipairs(commands()) do
    if not c.sub then
      w("      ", c.path, ") ", c.spec.sub and "((COMP_CWORD == 2)) && " or "", "words='", words(c),
        "' names='", names_of(c), "' valued='", table.concat(valued(c), " "), "' ;;\n")
    end
  end
  w("    esac\n  fi\n")
  w("  case \"$prev\" in\n    --member|--add-member|--remove-member|--agent) ",
    "COMPREPLY=($(compgen -W \"$(_agent_dispatch_names agents)\" -- \"$cur\")); return ;;\n",
    "    --group) COMPREPLY=($(compgen -W \"$(_agent_dispatch_names groups)\" -- \"$cur\")); return ;;\n  esac\n")
  w("  if [[ \" $valued \" == *\" $prev \"* ]]; then COMPREPLY=(); return; fi\n")
  w("  if [[ $cur == -* || -z $names ]]; then\n    COMPREPLY=($(compgen -W \"$words\" -- \"$cur\"))\n  else\n",
    "    COMPREPLY=($(compgen -W \"$(_agent_dispatch_names ${names}s) $words\" -- \"$cur\"))\n  fi\n}\n")
  w("complete -F _agent_dispatch agent-dispatch\n")
end

local function fish(helper)
  w("# fish completion for agent-dispatch (generated from its --help)\n")
  w("function __agent_dispatch_names\n    set -l b (command -v agent-dispatch); or return\n",
    "    agent-dispatch run (dirname $b)/", helper, " $argv[1] 2>/dev/null\nend\n")
  w("complete -c agent-dispatch -f\n")
  w("complete -c agent-dispatch -n __fish_use_subcommand -l version -s V -d 'Print the version'\n")
  for _, c in ipairs(commands()) do
    if not c.sub then
      w("complete -c agent-dispatch -n __fish_use_subcommand -a ", c.name, " -d '",
        (c.spec.summary or ""):gsub("'", "\\'"), "'\n")
    end
    local cond = c.sub and ("'__fish_seen_subcommand_from " .. c.name .. "; and __fish_seen_subcommand_from " .. c.sub .. "'")
      or ("'__fish_seen_subcommand_from " .. c.name .. "'")
    if c.spec.sub then
      for _, x in ipairs(commands()) do
        if x.name == c.name and x.sub then
          w("complete -c agent-dispatch -n '__fish_seen_subcommand_from ", c.name, "' -a ", x.sub, "\n")
        end
      end
    else
      for _, o in ipairs(options(c.spec)) do
        local long = o[1]:gsub("^%-%-", "")
        local kindv = VALUE_NAMES[o[1]]
        w("complete -c agent-dispatch -n ", cond, " -l ", long, o[2] and (" -s " .. o[2]:sub(2)) or "",
          o.arg and " -r" or "", kindv and (" -a '(__agent_dispatch_names " .. kindv .. "s)'") or "",
          " -d '", (o.help or ""):gsub("'", "\\'"), "'\n")
      end
      local n = names_of(c)
      if n ~= "" then
        w("complete -c agent-dispatch -n ", cond, " -a '(__agent_dispatch_names ", n, "s)'\n")
      end
    end
  end
end

local function zsh(helper)
  w("#compdef agent-dispatch\n# zsh completion for agent-dispatch (generated from its --help)\n")
  w("_agent_dispatch() {\n  local -a words_\n  local names=''\n")
  w("  if (( CURRENT == 2 )); then\n    words_=(--version --help help ", table.concat(cli.ORDER, " "),
    ")\n    compadd -a words_\n    return\n  fi\n")
  w("  case \"${words[2]} ${words[3]}\" in\n")
  for _, c in ipairs(commands()) do
    if c.sub then
      w("    '", c.path, "') words_=(", words(c), ") names='", names_of(c), "' ;;\n")
    end
  end
  w("    *) case \"${words[2]}\" in\n")
  for _, c in ipairs(commands()) do
    if not c.sub then
      w("      ", c.path, ") words_=(", words(c), ") names='", names_of(c), "' ;;\n")
    end
  end
  w("    esac ;;\n  esac\n")
  w("  case \"${words[CURRENT-1]}\" in\n    --member|--add-member|--remove-member|--agent) names=agent; words_=() ;;\n",
    "    --group) names=group; words_=() ;;\n  esac\n")
  w("  if [[ -n $names && ${words[CURRENT]} != -* ]]; then\n",
    "    words_+=(${(f)\"$(agent-dispatch run ${commands[agent-dispatch]:h}/", helper,
    " ${names}s 2>/dev/null)\"})\n  fi\n")
  w("  compadd -a words_\n}\n_agent_dispatch \"$@\"\n")
end

if kind == "man1" then man1()
elseif kind == "man7" then man7(arg1)
elseif kind == "bash" then bash(arg1)
elseif kind == "zsh" then zsh(arg1)
elseif kind == "fish" then fish(arg1)
else error("usage: generate.lua man1|man7 MD|bash|zsh|fish HELPER") end
io.stdout:write(table.concat(out))
