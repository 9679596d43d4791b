--- Small text and table helpers shared by the policy modules.
local core = require "ad.core"

local M = {}

-- The bytes %s matches (isspace in the C locale).
local SPACE = { [9] = true, [10] = true, [11] = true, [12] = true, [13] = true, [32] = true }

--- s without leading and trailing white space (%s). Not gsub("%s+$"):
--- that tries a match at every byte of s.
function M.strip(s)
  if type(s) ~= "string" then return s end
  local i = s:find("%S")
  if not i then return "" end
  local j = #s
  while SPACE[s:byte(j)] do j = j - 1 end
  return s:sub(i, j)
end

--- Empty strings mean "absent" everywhere in the tool surface.
function M.nonempty(s)
  if s == nil or s == "" then return nil end
  return s
end

--- "a, b ,,c" -> {"a", "b", "c"}
function M.csv(s)
  local out = {}
  s = s or ""
  -- A comma inside parentheses belongs to its item: a tool rule such as
  -- Bash(git log --format=%H,%s) is one rule.
  local depth, from = 0, 1
  for i = 1, #s + 1 do
    local c = s:sub(i, i)
    if c == "(" then
      depth = depth + 1
    elseif c == ")" and depth > 0 then
      depth = depth - 1
    elseif (c == "," and depth == 0) or c == "" then
      local part = M.strip(s:sub(from, i - 1))
      if part ~= "" then out[#out + 1] = part end
      from = i + 1
    end
  end
  return out
end

--- First n code points of s (never splits a UTF-8 sequence).
function M.cut(s, n)
  if s == nil then return nil end
  if n <= 0 then return "" end
  if #s <= n then return s end
  return core.text.sub(s, n)
end

function M.ulen(s)
  return core.text.len(s or "")
end

--- Python-style repr of a string for messages: 'value'.
function M.repr(v)
  if type(v) == "string" then
    return "'" .. v:gsub("\\", "\\\\"):gsub("'", "\\'"):gsub("\n", "\\n") .. "'"
  end
  return tostring(v)
end

--- Shortest round-trip number text in Python's style (0.5, 1.0, 1e-05).
function M.num(x)
  if math.type(x) == "integer" then return tostring(x) end
  return core.claude.format_double(x)
end

--- %g as C (and Python) print it.
function M.g(x)
  return string.format("%g", x)
end

--- A shallow copy of t, without its metatable (made in C at its final
--- size: the argument tables of every dispatch pass here).
M.copy = core.table.copy

function M.join(list, sep)
  return table.concat(list, sep or ", ")
end

function M.expanduser(path)
  if type(path) ~= "string" then return nil, "not a string" end
  if path:sub(1, 1) ~= "~" then return path end
  local user, rest = path:match("^~([^/]*)(.*)$")
  if user == "" then
    local home = os.getenv("HOME")
    if not home then return nil, "HOME is not set" end
    return home .. rest
  end
  -- ~user: look the user up in /etc/passwd (no shell involved)
  local f = io.open("/etc/passwd")
  if f then
    for line in f:lines() do
      local name, dir = line:match("^([^:]*):[^:]*:[^:]*:[^:]*:[^:]*:([^:]*):")
      if name == user then f:close(); return dir .. rest end
    end
    f:close()
  end
  return nil, "unknown user '" .. user .. "'"
end

-- path with ~ expanded, made absolute (from the current directory).
local function absolute(path)
  if path == "" then return nil, "the path is empty" end
  local p, err = M.expanduser(path)
  if not p then return nil, err end
  if p:sub(1, 1) ~= "/" then
    local cwd = os.getenv("PWD")
    local real = core.fs.realpath(".")
    p = (real or cwd or "") .. "/" .. p
  end
  return p
end

local function normalized(p)
  local parts = {}
  for seg in p:gmatch("[^/]+") do
    if seg == ".." then parts[#parts] = nil
    elseif seg ~= "." then parts[#parts + 1] = seg end
  end
  return "/" .. table.concat(parts, "/")
end

--- Absolute, normalized path (symlinks resolved when the path exists).
--- An empty path is an error, not the current directory (a directory
--- left blank must not mean wherever the process happens to run).
function M.abspath(path)
  local p, err = absolute(path)
  if not p then return nil, err end
  -- (not existing: normalized lexically)
  return core.fs.realpath(p) or normalized(p)
end

--- Absolute, normalized path with its symlinks left as they are, or nil.
function M.lexpath(path)
  local p = absolute(path)
  return p and normalized(p)
end

function M.basename(p)
  return (p:gsub("/+$", ""):match("([^/]*)$"))
end

function M.dirname(p)
  local d = p:gsub("/+$", ""):match("^(.*)/[^/]*$")
  if d == nil then return "." end
  if d == "" then return "/" end
  return d
end

--- A module loaded on first use: startup compiles only what a command
--- actually needs (the MCP handshake must answer within milliseconds).
function M.lazy(name)
  return setmetatable({}, { __index = function(t, k)
    local mod = require(name)
    setmetatable(t, { __index = mod })
    return mod[k]
  end })
end

function M.round(x, digits)
  local m = 10 ^ (digits or 0)
  return math.floor(x * m + 0.5) / m
end

-- The environment variables read so far (name -> value | false: unset).
-- The environment changes after start only through core.sys.unsetenv,
-- which empties this table (core.sys.env_memo); Lua has no setenv.
local env_memo = core.sys.env_memo()
local os_getenv = os.getenv

--- os.getenv(name), each variable read from the environment once: a
--- dispatch asks for a few (the config path, its claude, its depth) and
--- os.getenv scans the whole environment every time.
---@return string|nil
function M.getenv(name)
  local v = env_memo[name]
  if v == nil then
    v = os_getenv(name) or false
    env_memo[name] = v
  end
  return v or nil
end

return M
