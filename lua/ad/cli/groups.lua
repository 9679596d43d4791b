--- The group commands of the CLI: `group add|list|inspect|update|remove`.
--- Returns {group = command} whose sub table holds the subcommands; see
--- ad.cli for the shape.
local json = require "ad.infra.json"
local util = require "ad.infra.util"
local config = require "ad.storage.config"
local common = require "ad.cli.common"

local out, err = common.out, common.err

local G = {}

local group_not_found = common.group_not_found

local JSON_OPT = common.JSON_OPT

-- Group name of cfg as the JSON of list and inspect; known tells whether a
-- member's agent is configured.
local function group_json(cfg, name)
  local g = cfg.groups[name]
  local members = json.array()
  for _, m in ipairs(g.members) do
    members[#members + 1] = json.object({ agent = m.agent, use_for = m.use_for,
      known = cfg.agents[m.agent] ~= nil }, { "agent", "use_for", "known" })
  end
  return json.object({ name = name, description = g.description,
    shared_context = g.shared_context, members = members },
    { "name", "description", "shared_context", "members" })
end

-- Adds group name to cfg; returns the member count, or nil and the reason.
local function add_group(cfg, name, o)
  if cfg.groups[name] then return nil, "exists" end
  local members, seen = json.array(), {}
  for _, m in ipairs(o.member) do
    if not cfg.agents[m] then return nil, { missing = m, names = cfg.agent_names } end
    if not seen[m] then members[#members + 1] = { agent = m, use_for = "" } end
    seen[m] = true
  end
  cfg.groups[name] = { description = o.description or "",
                       shared_context = o.shared_context or "", members = members }
  cfg.group_names[#cfg.group_names + 1] = name
  return #members, true
end

G.add = {
  usage = "NAME [-d TEXT] [--shared-context TEXT] [--member AGENT]...",
  summary = "Create a group of agents.",
  options = { { "--description", "-d", arg = "TEXT", help = "What the group is for." },
              { "--shared-context", arg = "TEXT", help = "Context given to every member with its task." },
              { "--member", arg = "AGENT", multi = true, help = "A member agent (repeat for more)." } },
  positionals = { "NAME" }, min = 1, max = 1,
  run = function(o, pos)
    local name = pos[1]
    local bad = common.name_check(name, "group")
    if bad then return bad end
    local ok, ce, ws = config.mutate(function(cfg) return add_group(cfg, name, o) end)
    common.warnings(ws)
    if not ok then
      if ce == "exists" then
        err("Group '", name, "' already exists. Use 'agent-dispatch group remove ", name, "' first.")
        return 1
      elseif type(ce) == "table" and ce.missing then
        err("Error: agent '", ce.missing, "' not found.", require("ad.infra.suggest").hint(ce.missing, ce.names),
            " Add it first: agent-dispatch add ",
            ce.missing, " <directory>")
        return 1
      end
      return common.save_error(ce)
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
  usage = "[--json]", summary = "List groups.",
  options = { JSON_OPT },
  run = function(o)
    local cfg, code = common.load()
    if not cfg then return code end
    if o.json then
      local l = json.array()
      for _, name in ipairs(cfg.group_names) do l[#l + 1] = group_json(cfg, name) end
      return common.json_out(l)
    end
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
  usage = "NAME [--json]", summary = "Show one group.", positionals = { "NAME" }, min = 1, max = 1,
  options = { JSON_OPT },
  run = function(o, pos)
    local cfg, code = common.load()
    if not cfg then return code end
    local g = cfg.groups[pos[1]]
    if not g then return group_not_found(pos[1], cfg.group_names) end
    if o.json then return common.json_out(group_json(cfg, pos[1])) end
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

-- Applies the member changes of `group update` to group g of cfg: removals
-- first, then additions. Returns nil and the reason when one cannot apply.
local function change_members(cfg, name, g, o)
  for _, m in ipairs(o.remove_member) do
    if common.drop_member(g, m) == 0 then return { not_member = m } end
  end
  for _, m in ipairs(o.add_member) do
    if not cfg.agents[m] then return { missing = m, names = cfg.agent_names } end
    for _, have in ipairs(g.members) do
      if have.agent == m then return { already = m } end
    end
    g.members[#g.members + 1] = { agent = m, use_for = "" }
  end
  return nil
end

-- The reason a group update failed, reported; returns the exit status.
local function update_error(name, e, names)
  if e == "missing" then return group_not_found(name, names) end
  if type(e) == "table" and e.missing then
    err("Error: agent '", e.missing, "' not found.", require("ad.infra.suggest").hint(e.missing, e.names),
        " Add it first: agent-dispatch add ", e.missing, " <directory>")
    return 1
  elseif type(e) == "table" and e.not_member then
    err("Error: '", e.not_member, "' is not a member of group '", name, "'; nothing changed.")
    return 1
  elseif type(e) == "table" and e.already then
    err("Error: '", e.already, "' is already a member of group '", name, "'; nothing changed.")
    return 1
  end
  return common.save_error(e)
end

G.update = {
  usage = "NAME [-d TEXT] [--shared-context TEXT] [--add-member AGENT]... [--remove-member AGENT]...",
  summary = "Change a group's texts or members.",
  options = { { "--description", "-d", arg = "TEXT", help = "What the group is for." },
              { "--shared-context", arg = "TEXT", help = "Context given to every member with its task." },
              { "--add-member", arg = "AGENT", multi = true, help = "Add a member agent (repeatable)." },
              { "--remove-member", arg = "AGENT", multi = true,
                help = "Remove a member (repeatable; also one whose agent is gone)." } },
  positionals = { "NAME" }, min = 1, max = 1,
  run = function(o, pos)
    local name = pos[1]
    local given = o._given
    if not (given.description or given.shared_context or given.add_member or given.remove_member) then
      err("Nothing to update. Pass --description, --shared-context, --add-member or --remove-member.")
      return 1
    end
    local removing = {}
    for _, m in ipairs(o.remove_member or {}) do removing[m] = true end
    for _, m in ipairs(o.add_member or {}) do
      if removing[m] then
        err("Error: --add-member ", m, " and --remove-member ", m, " contradict each other; nothing changed.")
        return 2
      end
    end
    local names
    local ok, e, ws = config.mutate(function(cfg)
      names = cfg.group_names
      local g = cfg.groups[name]
      if not g then return nil, "missing" end
      local f = {}
      if given.description then g.description = o.description; f[#f + 1] = "description" end
      if given.shared_context then g.shared_context = o.shared_context; f[#f + 1] = "shared_context" end
      if given.add_member or given.remove_member then
        local problem = change_members(cfg, name, g, o)
        if problem then return nil, problem end
        f[#f + 1] = "members"
      end
      return f, true
    end)
    common.warnings(ws)
    if not ok then return update_error(name, e, names) end
    out("Updated group '", name, "': ", table.concat(ok, ", "))
    return 0
  end,
}

G.remove = {
  usage = "NAME", summary = "Delete a group (its agents are untouched).",
  positionals = { "NAME" }, min = 1, max = 1,
  run = function(_, pos)
    local name = pos[1]
    local names
    local ok, e, ws = config.mutate(function(cfg)
      names = cfg.group_names
      if not cfg.groups[name] then return nil, "missing" end
      cfg.groups[name] = nil
      for i, n in ipairs(cfg.group_names) do
        if n == name then table.remove(cfg.group_names, i) break end
      end
      return true, true
    end)
    common.warnings(ws)
    if not ok then
      if e == "missing" then return group_not_found(name, names) end
      return common.save_error(e)
    end
    out("Removed group '", name, "'.")
    return 0
  end,
}

return {
  group = { usage = "add|list|inspect|update|remove ...", summary = "Manage groups of agents.",
            sub = G },
}
