-- core.proc.spawn{env = list, env_add = "NAME=value"}: the child gets the
-- list and the one more variable (a dispatch's trace context next to the
-- environment shared by every child), and the list is left as it was.
-- Run: agent-dispatch run tests/lua/proc_env_add_test.lua
local here = arg[0]:match("(.*/)") or "./"
local tap = dofile(here .. "tap.lua")
local test, eq = tap.test, tap.eq
local core = require "ad.core"

-- The environment the child sees, one "NAME=value" a line.
local function child_env(opts)
  opts.argv = { "/usr/bin/env" }
  local p = assert(core.proc.spawn(opts))
  local lines = {}
  while true do
    local l = p:read_line()
    if not l then break end
    lines[#lines + 1] = l
  end
  p:wait()
  return table.concat(lines, "\n")
end

test("env_add is one more variable after env", function()
  local env = { "A_ONE=1", "A_TWO=2" }
  eq(child_env{ env = env, env_add = "AGENT_DISPATCH_TRACE=abc:def::" },
    "A_ONE=1\nA_TWO=2\nAGENT_DISPATCH_TRACE=abc:def::")
  eq(#env, 2, "the shared list is not changed")
  eq(child_env{ env = env }, "A_ONE=1\nA_TWO=2", "without env_add: env alone")
end)

test("a list with a non-string is refused, argv and env alike", function()
  for _, opts in ipairs({ { argv = { "/usr/bin/env", 1 } },
                          { argv = { "/usr/bin/env" }, env = { "A=1", {} } },
                          { argv = { "/usr/bin/env" }, env = { "A=1", 2 }, env_add = "B=2" },
                          { argv = { "/usr/bin/env" }, env = "A=1" } }) do
    local ok, err = pcall(core.proc.spawn, opts)
    eq(ok, false)
    local field = opts.env and "env" or "argv"
    eq(tostring(err):find("'" .. field .. "' must be a list of strings", 1, true) ~= nil, true, tostring(err))
  end
end)

-- core.proc.env(list): an environment held in C, which core.proc.spawn
-- takes as env like the list itself (with env_add after it), once made
-- the same for every spawn, whatever happens to the list afterwards.
test("a held environment is the list's, with env_add after it", function()
  local list = { "A_ONE=1", "A_TWO=two words", "A_EMPTY=" }
  local held = core.proc.env(list)
  eq(child_env{ env = held }, "A_ONE=1\nA_TWO=two words\nA_EMPTY=")
  eq(child_env{ env = held, env_add = "AGENT_DISPATCH_TRACE=abc:def::" },
    "A_ONE=1\nA_TWO=two words\nA_EMPTY=\nAGENT_DISPATCH_TRACE=abc:def::")
  -- (a copy: the list may change or go away)
  list[1], list[4] = "A_ONE=changed", "A_MORE=1"
  list = nil
  collectgarbage()
  eq(child_env{ env = held }, "A_ONE=1\nA_TWO=two words\nA_EMPTY=", "held as it was made")
end)

test("an empty list: a child with no environment but env_add", function()
  local held = core.proc.env({})
  eq(child_env{ env = held }, "")
  eq(child_env{ env = held, env_add = "ONLY=1" }, "ONLY=1")
end)

test("a list with a non-string is refused", function()
  for _, list in ipairs({ { "A=1", 2 }, { {} }, { "A=1", true } }) do
    local ok, err = pcall(core.proc.env, list)
    eq(ok, false)
    eq(tostring(err):find("list of strings", 1, true) ~= nil, true, tostring(err))
  end
  eq(pcall(core.proc.env, "A=1"), false, "not a table")
end)

test("many held environments come and go", function()
  for i = 1, 200 do
    local h = core.proc.env({ "N=" .. i, string.rep("x", 1000) .. "=y" })
    if i % 50 == 0 then eq(child_env{ env = h }, "N=" .. i .. "\n" .. string.rep("x", 1000) .. "=y") end
  end
  collectgarbage()
end)

return tap.done()
