--- The `lua` command of the CLI: which policy modules are embedded and where
--- each is loaded from (list/path), a shipped module's text (cat), and the
--- custom tool files (tools). Returns {lua = command}.
local core = require "ad.core"
local common = require "ad.cli.common"
local suggest = require "ad.infra.suggest"

local out, err = common.out, common.err

-- Where module name is loaded from: its file in the user Lua directory (the
-- one the module searcher uses, computed once in C; the same two file
-- names, in the searcher's order), else "embedded".
local function origin(dir, name)
  if dir == "" then return "embedded" end
  for _, suffix in ipairs({ ".lua", "/init.lua" }) do
    local p = dir .. "/" .. name:gsub("%.", "/") .. suffix
    if core.fs.stat(p) then return p end
  end
  return "embedded"
end

local function list()
  local dir = core.embed.user_lua_dir()
  for _, name in ipairs(core.embed.list()) do
    out(string.format("%-28s %s", name, origin(dir, name)))
  end
  return 0
end

local function tools()
  local plugins = require "ad.domain.plugins"
  require("ad.tools").load_builtin()
  out("Tool files in ", plugins.dir(), ":")
  for _, l in ipairs(plugins.loaded) do
    out("  ", l.file, ": tools ", #l.tools > 0 and table.concat(l.tools, ", ") or "(none)",
        "; hooks ", l.hooks)
  end
  for _, p in ipairs(plugins.problems) do out("  PROBLEM ", p.message) end
  if #plugins.loaded == 0 and #plugins.problems == 0 then out("  (none)") end
  return #plugins.problems > 0 and 1 or 0
end

local C = {}

local ACTIONS = { "list", "path", "cat", "tools" }

C.lua = {
  usage = "list | path | cat MODULE | tools",
  summary = "Show the embedded Lua policy modules and where each is loaded from.",
  positionals = { "ACTION", "MODULE" }, min = 1, max = 2,
  run = function(_, pos)
    local action = pos[1]
    if action == "list" or action == "path" then return list() end
    if action == "tools" then return tools() end
    if action == "cat" or action == "dump" then
      if not pos[2] then
        err("Error: lua cat needs a module name, e.g. 'agent-dispatch lua cat ad.domain.prompt'.")
        err("'agent-dispatch lua list' shows the modules.")
        return 2
      end
      local src = core.embed.source(pos[2])
      if not src then
        -- A name without its layer folder (ad.aggregate, as modules were
        -- once named): the modules it is the last part of.
        local last, names = pos[2]:match("([^.]+)$"), core.embed.list()
        local same = {}
        for _, n in ipairs(names) do
          if last and n:sub(-#last - 1) == "." .. last then same[#same + 1] = "'" .. n .. "'" end
        end
        local hint = #same > 0 and (" Did you mean " .. table.concat(same, " or ") .. "?")
          or suggest.hint(pos[2], names)
        err("Error: no embedded module '", pos[2], "'.", hint,
            " 'agent-dispatch lua list' shows the modules.")
        return 1
      end
      io.stdout:write(src)
      return 0
    end
    err("Error: unknown action '", action, "'.", suggest.hint(action, ACTIONS),
        " Use list, path, cat MODULE or tools (see 'agent-dispatch lua --help').")
    return 2
  end,
}

return C
