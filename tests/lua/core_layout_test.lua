-- ad.core is one subtable per binding file: core.<area> is filled by
-- src/bind/<area>.c, and every function in it is registered there under
-- its Lua name, so one grep finds both sides of a binding.
-- Run: agent-dispatch run tests/lua/core_layout_test.lua <source dir>
local here = arg[0]:match("(.*/)") or "./"
local tap = dofile(here .. "tap.lua")
local test, ok = tap.test, tap.ok
local core = require "ad.core"
local src = assert(arg[1], "usage: core_layout_test.lua <source dir>")

local function read(path)
  local f = io.open(path, "r")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys)
  return keys
end

test("a subtable is made at its first use, once; other names are nil", function()
  ok(core.no_such_area == nil, "an unknown name is nil")
  ok(core[1] == nil, "a number key is nil")
  local t = core.crypto
  ok(type(t) == "table" and type(t.sha256) == "function", "core.crypto is made")
  ok(rawget(core, "crypto") == t and core.crypto == t, "and kept")
end)

test("pairs(core) lists the subtable of every binding file", function()
  local listed = {}
  for k in pairs(core) do listed[k] = true end
  local n = 0
  for _, name in ipairs(core.fs.listdir(src .. "/src/bind")) do
    local area = name:match("^(%w+)%.c$")
    local text = area and read(src .. "/src/bind/" .. name)
    if text and text:find("void bind_" .. area .. "_register(lua_State *L)", 1, true) then
      n = n + 1
      ok(listed[area], "core." .. area .. " (src/bind/" .. name .. ") is listed")
    end
  end
  ok(n >= 15, "found the binding files (" .. n .. ")")
end)

test("every subtable is named after the binding file that fills it", function()
  local n = 0
  for _, area in ipairs(sorted_keys(core)) do
    if type(core[area]) == "table" and area ~= "array_mt" then
      n = n + 1
      local text = read(src .. "/src/bind/" .. area .. ".c")
      ok(text, "src/bind/" .. area .. ".c exists for core." .. area)
      if text then
        ok(text:find('"' .. area .. '"', 1, true),
           "src/bind/" .. area .. ".c registers core." .. area)
        for _, fn in ipairs(sorted_keys(core[area])) do
          ok(text:find('"' .. fn .. '"', 1, true),
             "core." .. area .. "." .. fn .. " is registered in src/bind/"
             .. area .. ".c")
        end
      end
    end
  end
  ok(n >= 15, "found the subtables (" .. n .. ")")
end)

test("nothing but subtables sits at the top of ad.core", function()
  for _, k in ipairs(sorted_keys(core)) do
    ok(type(core[k]) == "table" or k == "version",
       "core." .. k .. " is a subtable, not a flat name")
  end
end)

return tap.done()
