--- The group commands of the CLI: `group add|list|inspect|update|remove`.
--- Returns {group = command} whose sub table holds the subcommands; see
--- ad.cli for the shape.
local json = require "ad.infra.json"
local util = require "ad.infra.util"
local config = require "ad.storage.config"
local common = require "ad.cli.common"

local out, err = common.out, common.err

local G = {}

local function group_not_found(name)
  err("Group '", name, "' not found. Run 'agent-dispatch group list' to see groups.")
  return 1
end

-- Adds group name to cfg; returns the member count, or nil and the reason.
local function add_group(cfg, name, o)
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
end

G.add = {
  usage = "NAME [-d TEXT] [--shared-context TEXT] [--member AGENT]...",
  summary = "Create a group of agents.",
  options = { { "--description", "-d", arg = "TEXT" }, { "--shared-context", arg = "TEXT" },
              { "--member", arg = "AGENT", multi = true } },
  positionals = { "NAME" }, min = 1, max = 1,
  run = function(o, pos)
    local name = pos[1]
    local bad = common.name_check(name)
    if bad then return bad end
    local ok, ce, ws = config.mutate(function(cfg) return add_group(cfg, name, o) end)
    common.warnings(ws)
    if not ok then
      if ce == "exists" then
        err("Group '", name, "' already exists. Use 'agent-dispatch group remove ", name, "' first.")
        return 1
      elseif type(ce) == "table" and ce.missing then
        err("Error: agent '", ce.missing, "' not found. Add it first: agent-dispatch add ",
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
  usage = "", summary = "List groups.",
  run = function()
    local cfg, code = common.load()
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
    local cfg, code = common.load()
    if not cfg then return code end
    local g = cfg.groups[pos[1]]
    if not g then return group_not_found(pos[1]) end
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
    common.warnings(ws)
    if not ok then
      if e == "missing" then return group_not_found(name) end
      return common.save_error(e)
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
    common.warnings(ws)
    if not ok then
      if e == "missing" then err("Group '", name, "' not found.") return 1 end
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
