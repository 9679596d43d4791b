--- Can the tools/list arrays encoded at build time stand for the registry?
--- Decided once per process, so every tools/list of a server agrees, from
--- the environment and the file system alone: answering the first
--- tools/list loads no tool module, no config and no plugin loader.
local core = require "ad.core"
local paths = require "ad.storage.paths"

local M = {}

local ok

local function overridden(dir, name)
  local base = dir .. "/" .. name:gsub("%.", "/")
  return core.fs.stat(base .. ".lua") or core.fs.stat(base .. "/init.lua")
end

local function has_tool_files()
  local dir = paths.tools_dir()
  for _, name in ipairs(core.fs.stat(dir) and core.fs.listdir(dir) or {}) do
    if name:match("%.lua$") then return true end
  end
  return false
end

local function applies()
  -- The developer switch loads lua/ from a checkout, which may differ.
  if (os.getenv("AGENT_DISPATCH_LUA_DIR") or "") ~= "" then return false end
  -- The user Lua directory is searched only when it existed at startup.
  if core.embed.user_lua_present() then
    local dir = core.embed.user_lua_dir()
    for _, name in ipairs(core.embed.tools_deps()) do
      if overridden(dir, name) then return false end
    end
  end
  return not has_tool_files()
end

--- The tools/list array encoded at build time for key (see ad.protocol.mcp),
--- when it is exactly what the registry would give: no developer Lua
--- directory, no override in the user's Lua directory of a module the
--- definitions are built from, no tool file. nil otherwise (then the
--- caller encodes the registry).
function M.get(key)
  if ok == nil then ok = applies() end
  return ok and core.embed.tools(key) or nil
end

return M
