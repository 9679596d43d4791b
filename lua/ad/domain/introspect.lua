--- Project introspection: what an agent's directory holds (F08, F09).
--- File probes only; nothing is executed. Malformed files are skipped.
---
--- Every function takes a directory, or a source: what M.source(agent)
--- returns - the local directory, or for an agent on another host the
--- answer of one ssh round trip (ad.domain.remote_probe). A source has
--- health(), has(name, isdir), read(rel, max), stacks(), dbs().
local core = require "ad.core"
local json = require "ad.infra.json"
local util = require "ad.infra.util"

local M = {}

--- The source of a local directory.
function M.local_source(dir)
  local s = { directory = dir }
  function s.health()
    local ok = core.project.health(dir)
    if ok == nil then return "UNREADABLE" end
    return ok
  end
  function s.has(name, isdir) return core.project.has(dir, name, isdir) end
  function s.read(rel, max) return core.project.read(dir, rel, max) end
  function s.stacks() return core.project.stacks(dir) end
  function s.dbs() return core.project.dbs(dir) end
  return s
end

--- The source of an agent's project: its directory, or the remote probe
--- of an agent with a host (settings: the config's, for the ssh timeout).
function M.source(agent, settings)
  if agent.host then return require("ad.domain.remote_probe").source(agent, settings) end
  return M.local_source(agent.directory)
end

--- Probes every remote agent of cfg at once before a listing walks them
--- one by one (ad.domain.remote_probe.prefetch); nothing for local ones.
function M.prefetch(cfg)
  local remote = {}
  for _, name in ipairs(cfg.agent_names) do
    local a = cfg.agents[name]
    if a.host then remote[#remote + 1] = a end
  end
  if #remote > 1 then require("ad.domain.remote_probe").prefetch(remote, cfg.settings) end
end

local function src(d)
  if type(d) == "table" then return d end
  return M.local_source(d)
end

-- Project files are read only when they are regular files inside the
-- project (a link out of it, to a pipe or to /proc, is never followed),
-- never blocking, and never beyond a size cap.
local function read_text(dir, rel, max)
  local data, cut = src(dir).read(rel, max or (1024 * 1024))
  if not data or cut or not core.text.valid(data) then return nil end
  return data
end

local function first_lines(text, n)
  local out = {}
  if text:sub(-1) == "\n" then text = text:sub(1, -2) end
  for line in (text .. "\n"):gmatch("(.-)\r?\n") do
    if #out >= n then break end
    out[#out + 1] = line
  end
  return out
end

--- The keys of obj (the mcpServers object decoded from text) in the order
--- the file lists them. cjson keeps no key order; libyaml reads the same
--- JSON text as a flow mapping and does. Keys it cannot account for (text
--- libyaml rejects) follow, sorted.
local function key_order(text, obj)
  local ok, ydoc = pcall(core.yaml.load, text)
  if not ok then ydoc = nil end
  local ym = type(ydoc) == "table" and ydoc.mcpServers
  local mt = type(ym) == "table" and getmetatable(ym)
  local out, seen = {}, {}
  for _, k in ipairs(mt and mt.__order or {}) do
    if obj[k] ~= nil and not seen[k] then seen[k] = true; out[#out + 1] = k end
  end
  local rest = {}
  for k in pairs(obj) do
    if type(k) == "string" and not seen[k] then rest[#rest + 1] = k end
  end
  table.sort(rest)
  for _, k in ipairs(rest) do out[#out + 1] = k end
  return out
end

--- Names of MCP servers configured for the project, first seen first.
function M.mcp_servers(dir)
  local seen, out = {}, json.array()
  for _, rel in ipairs({ ".mcp.json", ".claude/settings.local.json" }) do
    local text = read_text(dir, rel)
    local doc = text and json.decode(text)
    if type(doc) == "table" and not json.is_array(doc) and type(doc.mcpServers) == "table"
        and (next(doc.mcpServers) == nil or not json.is_array(doc.mcpServers)) then
      for _, k in ipairs(key_order(text, doc.mcpServers)) do
        if not seen[k] then seen[k] = true; out[#out + 1] = k end
      end
    end
  end
  return out
end

--- A one-line description built from the project's own files.
function M.auto_describe(dir)
  local parts = {}
  local claude_md = read_text(dir, "CLAUDE.md")
  if claude_md then
    local got = {}
    for _, line in ipairs(first_lines(claude_md, 40)) do
      local s = util.strip(line)
      if s ~= "" and s:sub(1, 1) ~= "#" and s:sub(1, 2) ~= "--" then
        got[#got + 1] = s
        if #got == 2 then break end
      end
    end
    if #got > 0 then parts[#parts + 1] = table.concat(got, " ") end
  end
  if #parts == 0 then
    local readme = read_text(dir, "README.md")
    if readme then
      for _, line in ipairs(first_lines(readme, 20)) do
        local s = util.strip(line)
        local c = s:sub(1, 1)
        if s ~= "" and c ~= "#" and c ~= "[" and c ~= "!" and util.ulen(s) > 20 then
          parts[#parts + 1] = s
          break
        end
      end
    end
  end
  local pyproject = read_text(dir, "pyproject.toml")
  if pyproject then
    for line in (pyproject .. "\n"):gmatch("(.-)\r?\n") do
      local s = util.strip(line)
      if s:sub(1, 11) == "description" and s:find("=", 1, true) then
        local v = s:match("=(.*)$"):gsub("^[%s\"']+", ""):gsub("[%s\"']+$", "")
        if v ~= "" then parts[#parts + 1] = v end
        break
      end
    end
  end
  local pkg = read_text(dir, "package.json")
  local pdoc = pkg and json.decode(pkg)
  if type(pdoc) == "table" and type(pdoc.description) == "string"
      and util.strip(pdoc.description) ~= "" then
    parts[#parts + 1] = pdoc.description
  end
  local mcp = M.mcp_servers(dir)
  if #mcp > 0 then parts[#parts + 1] = "MCP: " .. table.concat(mcp, ", ") end
  local stacks = src(dir).stacks()
  if #stacks > 0 then parts[#parts + 1] = "Stack: " .. table.concat(stacks, ", ") end
  local dbs = src(dir).dbs()
  if #dbs > 0 then parts[#parts + 1] = "DB: " .. table.concat(dbs, ", ") end
  if #parts == 0 then
    return "Agent in " .. util.basename(type(dir) == "table" and (dir.directory or "") or dir)
  end
  return table.concat(parts, " | ")
end

--- true, false, "UNREADABLE" (the probe itself failed), or for a remote
--- agent "UNREACHABLE" (its host did not answer).
function M.health(dir)
  return src(dir).health()
end

--- First n lines of the project file dir/rel joined by "\n", cut to
--- max(200, n*200) code points; returns text, truncated. Only the first
--- MiB is read: the preview is at most 40000 code points.
function M.preview(dir, rel, n)
  local data, cut = src(dir).read(rel, 1024 * 1024)
  if not data then return nil end
  data = core.text.fix(data)
  local all = first_lines(data, n + 1)
  local truncated = #all > n
  if truncated then all[#all] = nil end
  truncated = truncated or cut
  local text = table.concat(all, "\n")
  local cap = math.max(200, n * 200)
  if util.ulen(text) > cap then
    text = util.cut(text, cap)
    truncated = true
  end
  return text, truncated
end

return M
