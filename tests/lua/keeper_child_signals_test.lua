-- A child started by the keeper (core.proc.spawn{keeper = true}) runs
-- with every signal at its default and none blocked, as a child of the
-- server does: the keeper resets only the signals it found away from
-- their default (SIGPIPE, ignored by the server and kept by the exec)
-- instead of every signal.
-- Run: agent-dispatch run tests/lua/keeper_child_signals_test.lua
local here = arg[0]:match("(.*/)") or "./"
local tap = dofile(here .. "tap.lua")
local test, eq = tap.test, tap.eq
local core = require "ad.core"

-- The child's own signal masks and parent, from /proc/self/status.
local function status_of(keeper)
  local p = assert(core.proc.spawn{ argv = { "/bin/cat",
    "/proc/self/status" }, keeper = keeper })
  local got = {}
  while true do
    local l = p:read_line()
    if not l then break end
    local k, v = l:match("^(%w+):%s*(%S+)")
    if k then got[k] = v end
  end
  p:wait()
  p:close()
  return got
end

for _, keeper in ipairs({ true, false }) do
  test("signals at their default in a child " .. (keeper and "of the keeper" or "of our own"), function()
    local s = status_of(keeper)
    eq(s.SigIgn, "0000000000000000", "nothing ignored (SIGPIPE included)")
    eq(s.SigBlk, "0000000000000000", "nothing blocked")
    eq(s.SigCgt, "0000000000000000", "nothing caught")
    eq(tonumber(s.PPid) ~= core.sys.getpid(), keeper, "started by the keeper: " .. tostring(keeper))
  end)
end

return tap.done()
