--- Unknown keys of an agents.yaml, for doctor when ad.config has no
--- unknown_keys of its own: unknown_keys(path) -> {{key =, where =,
--- suggestion =, permission = bool}...} (nil when the file cannot be read
--- or parsed: the config check reports that). A key is a permission key
--- when it, or the known key it is probably a typo of, decides what an
--- agent may do.
local core = require "ad.core"

local M = {}

local KNOWN = {
  top = { "agents", "groups", "settings" },
  agent = { "directory", "description", "timeout", "max_budget_usd", "model",
            "permission_mode", "allowed_tools", "disallowed_tools",
            "capabilities", "risky_capabilities" },
  group = { "description", "shared_context", "members" },
  member = { "agent", "use_for" },
  settings = { "default_timeout", "default_max_budget_usd",
               "default_permission_mode", "default_allowed_tools",
               "default_disallowed_tools", "max_dispatch_depth",
               "max_concurrency", "cache", "job_retention_days" },
}

M.PERMISSION = { permission_mode = true, allowed_tools = true, disallowed_tools = true,
  default_permission_mode = true, default_allowed_tools = true,
  default_disallowed_tools = true }

local function distance(a, b)
  local prev = {}
  for j = 0, #b do prev[j] = j end
  for i = 1, #a do
    local cur = { [0] = i }
    for j = 1, #b do
      local cost = a:sub(i, i) == b:sub(j, j) and 0 or 1
      cur[j] = math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
    end
    prev = cur
  end
  return prev[#b]
end

--- The known name closest to word, when close enough to be a typo.
function M.suggest(word, known)
  local best, bd = nil, math.huge
  for _, k in ipairs(known) do
    local d = distance(word, k)
    if d < bd then best, bd = k, d end
  end
  if best and bd <= math.max(2, #word // 3) then return best end
  return nil
end

local function check(map, known, where, out)
  if type(map) ~= "table" then return end
  local set = {}
  for _, k in ipairs(known) do set[k] = true end
  local keys = {}
  for k in pairs(map) do
    if type(k) == "string" and not set[k] then keys[#keys + 1] = k end
  end
  table.sort(keys)
  for _, k in ipairs(keys) do
    local s = M.suggest(k, known)
    out[#out + 1] = { key = k, where = where, suggestion = s,
                      permission = M.PERMISSION[k] == true or M.PERMISSION[s or ""] == true }
  end
end

local function sorted_keys(t)
  local ks = {}
  for k in pairs(type(t) == "table" and t or {}) do
    if type(k) == "string" then ks[#ks + 1] = k end
  end
  table.sort(ks)
  return ks
end

function M.unknown_keys(path)
  local text = core.fs.read_file(path, 16 * 1024 * 1024)
  if not text then return nil end
  local doc, yerr = core.yaml.load(text)
  if yerr or type(doc) ~= "table" then return nil end
  local out = {}
  check(doc, KNOWN.top, "top level", out)
  for _, name in ipairs(sorted_keys(doc.agents)) do
    check(doc.agents[name], KNOWN.agent, "agent '" .. name .. "'", out)
  end
  for _, name in ipairs(sorted_keys(doc.groups)) do
    local g = doc.groups[name]
    check(g, KNOWN.group, "group '" .. name .. "'", out)
    if type(g) == "table" and type(g.members) == "table" then
      for i, m in ipairs(g.members) do
        if type(m) == "table" then
          check(m, KNOWN.member, "group '" .. name .. "' member " .. i, out)
        end
      end
    end
  end
  check(doc.settings, KNOWN.settings, "settings", out)
  return out
end

return M
