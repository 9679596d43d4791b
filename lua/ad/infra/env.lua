--- The process environment as os.getenv reads it, each variable read from
--- the environment once: a dispatch asks for a few of them (the config
--- path, its claude, its depth) and os.getenv scans the whole environment
--- every time. It changes after start only through core.sys.unsetenv,
--- which empties the memo (core.sys.env_memo); Lua has no setenv.
local core = require "ad.core"

local memo = core.sys.env_memo() -- name -> value | false (unset)
local getenv = os.getenv

--- os.getenv(name), remembered.
---@return string|nil
return function(name)
  local v = memo[name]
  if v == nil then
    v = getenv(name) or false
    memo[name] = v
  end
  return v or nil
end
