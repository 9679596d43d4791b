-- A tiny TAP producer for Lua policy tests run by the built binary
-- (agent-dispatch run tests/lua/x_test.lua). test(name, fn) runs fn as
-- its own task; a test that raises or never finishes fails.
local core = require "ad.core"

local M = { n = 0, failed = 0 }

function M.test(name, fn)
  M.n = M.n + 1
  local t = core.task.spawn(fn)
  local ok, err = t:wait()
  if ok then
    print("ok " .. M.n .. " - " .. name)
  else
    M.failed = M.failed + 1
    print("not ok " .. M.n .. " - " .. name)
    print("  # " .. tostring(err):gsub("\n", "\n  # "))
  end
end

local function show(v)
  if type(v) == "string" then return string.format("%q", v) end
  if type(v) == "table" then return require("ad.infra.json").encode(v) end
  return tostring(v)
end

function M.eq(got, want, what)
  if got ~= want then
    error((what or "value") .. ": expected " .. show(want) .. ", got " .. show(got), 2)
  end
end

function M.ok(cond, what)
  if not cond then error("expected: " .. tostring(what), 2) end
end

function M.has(s, sub, what)
  if type(s) ~= "string" or not s:find(sub, 1, true) then
    error((what or "text") .. ": " .. show(s) .. " does not contain " .. show(sub), 2)
  end
end

-- A private directory (0700) for one test file, removed by done().
local made = {}
function M.tmpdir()
  local d = os.tmpname()
  os.remove(d)
  assert(core.fs.mkdirs(d, 448))
  made[#made + 1] = d
  return d
end

function M.done()
  for _, d in ipairs(made) do
    -- (os.tmpname's names are /tmp/lua_ and letters: nothing to quote)
    os.execute("rm -rf -- '" .. d .. "'")
  end
  print("1.." .. M.n)
  return M.failed == 0
end

return M
