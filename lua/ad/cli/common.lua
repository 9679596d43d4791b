--- What every CLI command family shares: output, the rendering of config
--- errors (wording from ad.errors.render), loading the config, the agent
--- options of add/update with their validation, and the "not found" and
--- health texts. Commands return the process exit status (0 ok, 1 reported
--- error, 2 usage error); config errors name the file and the problem,
--- leave it untouched and exit 1 - never a traceback.
local config = require "ad.storage.config"
local agents = require "ad.domain.agents"
local util = require "ad.infra.util"
local introspect = require "ad.domain.introspect"
local render = require "ad.infra.errors.render"
local suggest = require "ad.infra.suggest"
local json = require "ad.infra.json"

local M = {}

M.PROG = "agent-dispatch"

function M.out(...) io.stdout:write(...) io.stdout:write("\n") end
function M.err(...) io.stderr:write(...) io.stderr:write("\n") end
local err = M.err

--- Text from a config or a record as a terminal shows it: control
--- characters (an escape sequence, a bell) escaped as \xHH, so what a
--- description holds cannot recolour or rewrite the terminal. Newlines
--- and tabs stay.
function M.shown(s)
  s = tostring(s)
  if not s:find("[%c\127]") then return s end
  return (s:gsub("[%c\127]", function(c)
    if c == "\n" or c == "\t" then return c end
    return string.format("\\x%02x", c:byte())
  end))
end

--- "Error: " and the message of a failed result r (a message of the
--- claude CLI's own may start with "Error: " already: not said twice).
function M.report_error(r)
  err("Error: ", (tostring(r.error):gsub("^Error: ", "")))
end

--- A config load error: "Error: <message>:" then the detail, indented.
function M.load_error(e)
  local msg, detail = render.load(e)
  err("Error: ", msg, ":")
  err("  ", tostring(detail))
  return 1
end

--- A config change error (a load error when the change could not load).
function M.save_error(e)
  local msg, remedy = render.save(e)
  if not msg then return M.load_error(e) end
  err("Error: ", msg)
  err(remedy)
  return 1
end

function M.warnings(ws)
  for _, w in ipairs(ws or {}) do err("Warning: ", w) end
end

--- The config, or nil and the exit status after reporting why not.
function M.load()
  local cfg, e = config.load()
  if not cfg then return nil, M.load_error(e) end
  return cfg
end

--- Prints v as JSON (one line) on stdout; returns 0.
--- The --json option of every command that can print JSON.
--- The job id arg names: the id itself, or the one id it is a prefix of
--- (hex digits, any case, as git takes commit prefixes). nil and the exit
--- status after reporting why not.
function M.resolve_job_id(arg)
  local jobs = require "ad.storage.jobs"
  local util = require "ad.infra.util"
  local id = type(arg) == "string" and arg:lower() or ""
  if jobs.valid(id) then return id end
  if not id:match("^%x+$") or #id > 32 then
    M.err("Invalid job id: ", util.repr(arg), " (expected 32 hex chars); a unique prefix of one also works.")
    return nil, 1
  end
  local ids = jobs.ids_with_prefix(id)
  if #ids == 1 then return ids[1] end
  if #ids == 0 then
    M.err("No job id starts with '", id, "'. Run 'agent-dispatch jobs' to see jobs.")
    return nil, 1
  end
  M.err("Job id prefix '", id, "' is ambiguous; it matches ", #ids, " jobs:")
  for i = 1, math.min(#ids, 10) do M.err("  ", ids[i]) end
  if #ids > 10 then M.err("  ...") end
  M.err("Give more digits.")
  return nil, 1
end

M.JSON_OPT = { "--json", help = "Print JSON on stdout instead of text." }

function M.json_out(v)
  M.out(json.encode(v))
  return 0
end

--- An agent that is not configured, with the closest configured name when
--- one is close (names: the configured agents, when known).
function M.agent_not_found(name, names)
  local hint = suggest.hint(name, names)
  err("Agent '", name, "' not found.", hint, " Run 'agent-dispatch list' to see agents.")
  return 1
end

--- A group that is not configured, with the closest configured name.
function M.group_not_found(name, names)
  local hint = suggest.hint(name, names)
  err("Group '", name, "' not found.", hint, " Run 'agent-dispatch group list' to see groups.")
  return 1
end

--- The config and agent name's entry, or nil and the exit status.
function M.load_agent(name)
  local cfg, code = M.load()
  if not cfg then return nil, nil, code end
  local a = cfg.agents[name]
  if not a then return nil, nil, M.agent_not_found(name, cfg.agent_names) end
  return cfg, a
end

--- dir: a directory or an introspection source (ad.domain.introspect).
function M.health_label(dir)
  local h = introspect.health(dir)
  if h == true then return "OK" end
  if h == false then return "NOT FOUND" end
  if h == "UNREACHABLE" then return "UNREACHABLE" end
  return "UNREADABLE"
end

--- The names of the groups of cfg that list agent name as a member, in
--- config order.
function M.groups_with_member(cfg, name)
  local gs = {}
  for _, g in ipairs(cfg.group_names) do
    for _, m in ipairs(cfg.groups[g].members) do
      if m.agent == name then gs[#gs + 1] = g break end
    end
  end
  return gs
end

--- Removes every member entry of group g that names agent name; returns
--- how many there were.
function M.drop_member(g, name)
  local n = 0
  for i = #g.members, 1, -1 do
    if g.members[i].agent == name then table.remove(g.members, i); n = n + 1 end
  end
  return n
end

--- Error code 1 when name is not a valid agent (or, kind "group", group)
--- name, else nil.
function M.name_check(name, kind)
  local e = agents.name_error(name)
  if e and kind then e = e:gsub("^Invalid agent name", "Invalid " .. kind .. " name") end
  if e then err("Error: ", e) return 1 end
  return nil
end

--- Error code 1 after reporting a one-off --timeout below 1 second (as
--- add and update refuse it), else nil.
function M.timeout_check(timeout)
  if timeout ~= nil and timeout < 1 then
    err("Error: --timeout must be a positive number of seconds (got ", timeout, ").")
    return 1
  end
  return nil
end

--- Reports the failed dispatch result r of `command` (test, dispatch) to
--- agent name, which ran with a timeout of seconds: the error and what to
--- do, in the CLI's terms. Returns 1.
function M.report_failure(command, name, r, seconds)
  if r.error_type == "timeout" then
    for _, l in ipairs(require("ad.infra.errors").cli_timeout_advice(name, seconds, command)) do err(l) end
    return 1
  end
  M.report_error(r)
  if r.error_type == "permission" then
    err("Diagnosis: permission error")
    err("  agent-dispatch update ", name, " --permission-mode bypassPermissions")
    err("  agent-dispatch update ", name, " --allowed-tools Bash,Read,Edit,Write")
  elseif r.error_type == "budget" then
    err("Diagnosis: spend cap reached")
    err("  The claude CLI stopped the session at --max-budget-usd.")
    err("  agent-dispatch update ", name, " --max-budget-usd 2.0")
    err("  agent-dispatch update ", name, " --model haiku")
  end
  return 1
end

-- ------------------------------------------------------ agent options --

M.AGENT_OPTS = {
  { "--description", "-d", arg = "TEXT", help = "What the agent is good at." },
  { "--timeout", arg = "INT", type = "int", help = "Seconds per dispatch (default 300)." },
  { "--model", arg = "TEXT", help = "Model for this agent ('none' clears)." },
  { "--max-budget", arg = "FLOAT", type = "float", help = "USD cap per dispatch (0 clears)." },
  { "--max-budget-usd", arg = "FLOAT", type = "float", help = "Alias of --max-budget." },
  { "--permission-mode", arg = "MODE", help = "One of " ..
    table.concat(require("ad.domain.permission").MODES, ", ") .. " ('none' clears)." },
  { "--allowed-tools", arg = "CSV", help = "Tools the agent may use ('none' = inherit)." },
  { "--disallowed-tools", arg = "CSV", help = "Tools the agent may not use." },
  { "--capabilities", arg = "CSV", help = "Descriptive labels." },
  { "--risky-capabilities", arg = "CSV", help = "Descriptive labels of risky abilities." },
}

--- Checks --timeout, --max-budget(-usd), --permission-mode, --model and
--- the tool lists of add/update. Returns nil and the budget given (nil
--- when none), or the exit status (1; 2 for a value claude would refuse)
--- after reporting.
function M.check_agent_opts(o)
  if M.unless_none(o.permission_mode) then
    local problem = require("ad.domain.permission").problem(o.permission_mode)
    if problem then
      err("Error: Invalid value for --permission-mode: ", problem)
      return 2
    end
  end
  for _, f in ipairs({ { "model", "model", "--model" }, { "allowed_tools", "allowed tool", "--allowed-tools" },
      { "disallowed_tools", "disallowed tool", "--disallowed-tools" } }) do
    local problem = agents.flag_problem(f[2], M.unless_none(o[f[1]]))
    if problem then
      err("Error: Invalid value for ", f[3], ": ", problem, ".")
      return 2
    end
  end
  local bad = M.timeout_check(o.timeout)
  if bad then return bad end
  local budget = o.max_budget
  if o._given.max_budget_usd then budget = o.max_budget_usd end
  if budget ~= nil and budget < 0 then
    err("Error: --max-budget must be >= 0 (got ", util.num(budget), "); use 0 to clear the limit.")
    return 1
  end
  return nil, budget
end

--- The value of a text option, nil when it is 'none' or blank.
function M.unless_none(v)
  if v == nil or agents.is_none(v) then return nil end
  return v
end

return M
