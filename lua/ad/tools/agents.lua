--- Read-only tools: list_agents, inspect_agent, list_groups, inspect_group.
local json = require "ad.infra.json"
local util = require "ad.infra.util"
local tools = require "ad.tools"
local introspect = util.lazy "ad.domain.introspect"
local config = require "ad.storage.config"

local RO = json.object({ readOnlyHint = true, openWorldHint = false },
                       { "readOnlyHint", "openWorldHint" })

local SUMMARY_KEYS = { "name", "directory", "host", "description", "healthy", "host_error",
  "has_claude_md", "has_mcp_config", "mcp_servers", "stacks", "dbs",
  "permission_mode", "allowed_tools", "disallowed_tools", "capabilities",
  "risky_capabilities" }

tools.define{
  name = "list_agents",
  title = "List agents",
  description = "List the Claude Code agents you can delegate to: each lives " ..
    "in its own project directory with its own CLAUDE.md, MCP servers and " ..
    "tools. Shows name, directory, description, health, detected stacks and " ..
    "MCP servers, and permission settings. Call this first, then " ..
    "inspect_agent for details, then dispatch.",
  params = {},
  annotations = RO,
  guard = "config",
  handler = function(_, ctx)
    local cfg = ctx.cfg
    if #cfg.agent_names == 0 then
      return tools.envelope("No agents configured. Run: agent-dispatch add <name> <directory>")
    end
    local out = json.array()
    introspect.prefetch(cfg)
    for _, name in ipairs(cfg.agent_names) do
      local a = cfg.agents[name]
      local src = introspect.source(a, cfg.settings)
      local healthy = src.health()
      local e = json.object({ name = name, directory = a.directory, host = a.host,
        description = a.description, healthy = healthy, host_error = src.error,
        has_claude_md = healthy == true and src.has("CLAUDE.md"),
        has_mcp_config = healthy == true and src.has(".mcp.json") },
        SUMMARY_KEYS)
      if healthy == true then
        local mcp = introspect.mcp_servers(src)
        if #mcp > 0 then e.mcp_servers = mcp end
        local st = src.stacks()
        if #st > 0 then e.stacks = st end
        local dbs = src.dbs()
        if #dbs > 0 then e.dbs = dbs end
      end
      e.permission_mode = util.nonempty(a.permission_mode)
      e.allowed_tools = a.allowed_tools
      e.disallowed_tools = a.disallowed_tools
      if #a.capabilities > 0 then e.capabilities = a.capabilities end
      if #a.risky_capabilities > 0 then e.risky_capabilities = a.risky_capabilities end
      out[#out + 1] = e
    end
    ctx.log("info", "Found " .. #out .. " configured agents")
    return out
  end,
}

local INSPECT_KEYS = { "name", "directory", "host", "description", "timeout", "model",
  "max_budget_usd", "permission_mode", "allowed_tools", "disallowed_tools",
  "capabilities", "risky_capabilities", "healthy", "host_error", "mcp_servers", "stacks",
  "dbs", "scan_error", "has_claude_md", "has_readme", "has_mcp_config",
  "claude_md_preview", "claude_md_truncated", "readme_preview",
  "readme_truncated" }

tools.define{
  name = "inspect_agent",
  title = "Inspect an agent",
  description = "Details of one agent before you dispatch to it: its " ..
    "configuration (timeout, model, budget, permissions), health, MCP " ..
    "servers, stacks, databases, and previews of its CLAUDE.md and README. " ..
    "Never runs the agent.",
  params = {
    { name = "name", type = "string", required = true, description = "Agent name (see list_agents)." },
    { name = "preview_lines", type = "integer", default = 40, minimum = 0, maximum = 200,
      description = "Lines of CLAUDE.md/README to preview (0-200; 0 = none)." },
  },
  annotations = RO,
  guard = "config",
  handler = function(args, ctx)
    local cfg = ctx.cfg
    local a = cfg.agents[args.name]
    if not a then return tools.envelope(require("ad.domain.dispatch").unknown_agent(cfg, args.name)) end
    local lines = math.max(0, math.min(200, args.preview_lines))
    local e = json.object({ name = args.name, directory = a.directory, host = a.host,
      description = a.description, timeout = a.timeout, model = a.model,
      max_budget_usd = a.max_budget_usd,
      permission_mode = util.nonempty(a.permission_mode),
      allowed_tools = a.allowed_tools, disallowed_tools = a.disallowed_tools },
      INSPECT_KEYS)
    if #a.capabilities > 0 then e.capabilities = a.capabilities end
    if #a.risky_capabilities > 0 then e.risky_capabilities = a.risky_capabilities end
    local src = introspect.source(a, cfg.settings)
    local healthy = src.health()
    e.healthy = healthy
    e.host_error = src.error
    ctx.log("info", "Inspected " .. args.name .. " (" ..
      (a.host and (a.host .. ":") or "") .. a.directory .. ")")
    if healthy ~= true then return e end
    e.mcp_servers = introspect.mcp_servers(src)
    e.stacks = src.stacks()
    e.dbs = src.dbs()
    e.has_claude_md = src.has("CLAUDE.md")
    e.has_readme = src.has("README.md")
    e.has_mcp_config = src.has(".mcp.json")
    if lines > 0 then
      if e.has_claude_md then
        local text, cut = introspect.preview(src, "CLAUDE.md", lines)
        e.claude_md_preview = text
        if cut then e.claude_md_truncated = true end
      end
      if e.has_readme then
        local text, cut = introspect.preview(src, "README.md", lines)
        e.readme_preview = text
        if cut then e.readme_truncated = true end
      end
    end
    return e
  end,
}

local function member_entry(cfg, m, detailed)
  local e = json.object({ agent = m.agent, use_for = util.nonempty(m.use_for) },
    { "agent", "use_for", "unknown", "directory", "description", "healthy" })
  local a = cfg.agents[m.agent]
  if not a then
    e.unknown = true
    return e
  end
  if detailed then
    e.directory = a.directory
    e.description = util.nonempty(a.description)
  end
  e.healthy = introspect.source(a, cfg.settings).health()
  return e
end

tools.define{
  name = "list_groups",
  title = "List groups",
  description = "List the groups of agents (for example all services of one " ..
    "product): description, whether a shared context is set, and members " ..
    "with their health. Dispatch to a member with dispatch(group=...) to " ..
    "give it the group's shared context.",
  params = {},
  annotations = RO,
  guard = "config",
  handler = function(_, ctx)
    local cfg = ctx.cfg
    if #cfg.group_names == 0 then
      return tools.envelope("No groups configured. Create one: agent-dispatch group add <name>")
    end
    local out = json.array()
    for _, name in ipairs(cfg.group_names) do
      local g = cfg.groups[name]
      local members = json.array()
      for _, m in ipairs(g.members) do members[#members + 1] = member_entry(cfg, m, false) end
      out[#out + 1] = json.object({ name = name, description = g.description,
        shared_context_present = util.strip(g.shared_context) ~= "",
        member_count = #g.members, members = members },
        { "name", "description", "shared_context_present", "member_count", "members" })
    end
    ctx.log("info", "Found " .. #out .. " configured groups")
    return out
  end,
}

tools.define{
  name = "inspect_group",
  title = "Inspect a group",
  description = "Details of one group: its description, the full shared " ..
    "context its members receive, and each member's directory, description " ..
    "and health (unknown members are flagged).",
  params = { { name = "name", type = "string", required = true, description = "Group name." } },
  annotations = RO,
  guard = "config",
  handler = function(args, ctx)
    local cfg = ctx.cfg
    local g = cfg.groups[args.name]
    if not g then
      return tools.envelope("Unknown group: " .. util.repr(args.name) .. ". Available: " ..
        (#cfg.group_names > 0 and table.concat(cfg.group_names, ", ") or "(none configured)"))
    end
    local members = json.array()
    for _, m in ipairs(g.members) do members[#members + 1] = member_entry(cfg, m, true) end
    ctx.log("info", "Inspected group " .. args.name .. " (" .. #g.members .. " members)")
    return json.object({ name = args.name, description = g.description,
      shared_context = g.shared_context, member_count = #g.members, members = members },
      { "name", "description", "shared_context", "member_count", "members" })
  end,
}
