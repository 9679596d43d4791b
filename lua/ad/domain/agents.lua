--- Agent mutations shared by the MCP tools and the CLI: validation of new
--- values, and the load -> mutate -> save under the config lock.
local core = require "ad.core"
local json = require "ad.infra.json"
local util = require "ad.infra.util"
local config = require "ad.storage.config"
local introspect = require "ad.domain.introspect"

local M = {}

M.NAME_RULE = "use letters, digits, '-' and '_', starting with a letter or digit"

function M.name_error(name)
  if core.text.valid_name(name) then return nil end
  return "Invalid agent name " .. util.repr(name) .. ": " .. M.NAME_RULE .. "."
end

--- Resolves and checks a directory. Returns the absolute path or nil, msg.
function M.resolve_dir(dir)
  local abs, err = util.abspath(dir)
  if not abs then return nil, "Invalid directory " .. util.repr(dir) .. ": " .. err end
  if core.project.health(abs) ~= true then
    if core.fs.stat(abs) == "file" then return nil, abs .. " is a file, not a directory" end
    return nil, "Directory does not exist: " .. abs
  end
  return abs
end

--- What makes value (a model name, or a tool list: a table or its CSV
--- text) something no dispatch would pass on, or nil: an entry starting
--- with '-' would be read by the claude CLI as a flag, so every dispatch
--- refuses it (src/claude.c); refused where it is set, instead.
function M.flag_problem(label, value)
  if value == nil then return nil end
  local items = type(value) == "table" and value or util.csv(value)
  if type(value) == "string" and label == "model" then items = { util.strip(value) } end
  for _, v in ipairs(items) do
    if type(v) == "string" and v:sub(1, 1) == "-" then
      return label .. " " .. util.repr(v) .. " starts with '-': the claude CLI would read it " ..
        "as a flag, so every dispatch would be refused"
    end
  end
  return nil
end

--- The first flag_problem of an agent's model and tool lists, or nil.
function M.agent_flag_problem(a)
  return M.flag_problem("model", a.model) or M.flag_problem("allowed tool", a.allowed_tools)
    or M.flag_problem("disallowed tool", a.disallowed_tools)
end

--- true for 'none' (any case, surrounding blanks ignored) and blank text:
--- the value that means "unset / inherit the settings default".
function M.is_none(s)
  local v = util.strip(s or ""):lower()
  return v == "" or v == "none"
end

function M.list(csv)
  local l = util.csv(csv)
  return json.array(l)
end

--- Adds an agent (fields already validated). Returns the entry or nil,
--- error (a message string, or a config error table).
function M.add(name, fields)
  return config.mutate(function(cfg)
    if cfg.agents[name] then return nil, "exists" end
    cfg.agents[name] = fields
    cfg.agent_names[#cfg.agent_names + 1] = name
    return fields, true
  end)
end

function M.remove(name)
  return config.mutate(function(cfg)
    if not cfg.agents[name] then return nil, { kind = "not_found", names = cfg.agent_names } end
    cfg.agents[name] = nil
    for i, n in ipairs(cfg.agent_names) do
      if n == name then table.remove(cfg.agent_names, i) break end
    end
    return name, true
  end)
end

--- apply(agent) mutates the entry and returns the changed field names.
function M.update(name, apply)
  return config.mutate(function(cfg)
    local a = cfg.agents[name]
    if not a then return nil, { kind = "not_found", names = cfg.agent_names } end
    local fields = apply(a)
    if #fields == 0 then return nil, { kind = "nothing" } end
    return fields, true
  end)
end

function M.describe_dir(dir)
  return introspect.auto_describe(dir)
end

return M
