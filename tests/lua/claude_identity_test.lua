-- The claude binary is found and identified with one stat per dispatch:
-- core.sys.which(name, true) also gives the core.fs.file_id of what it
-- found (ad.domain.transport keys the live-channel answer on it), the
-- very id file_id gives, changed when the binary is replaced or modified.
-- PATH is set by tests/CMakeLists.txt to AD_WHICH_DIR, then the system's.
-- Run: agent-dispatch run tests/lua/claude_identity_test.lua
local here = arg[0]:match("(.*/)") or "./"
local tap = dofile(here .. "tap.lua")
local test, eq, ok = tap.test, tap.eq, tap.ok
local core = require "ad.core"

local dir = assert(os.getenv("AD_WHICH_DIR"), "AD_WHICH_DIR")
assert(core.fs.mkdirs(dir, 448))
local NAME = "ad-which-test-claude"
local bin = dir .. "/" .. NAME
assert(core.fs.write_atomic(bin, "#!/bin/sh\nexit 0\n", 493))

test("which(name, true): the path and the file id file_id gives", function()
  local path, id = core.sys.which(NAME, true)
  eq(path, bin, "found on PATH")
  ok(id ~= nil, "an id")
  eq(id, core.fs.file_id(bin), "the id of file_id")
  eq(select("#", core.sys.which(NAME)), 1, "without with_id: the path only")
end)

test("the id changes when the binary is replaced or grows", function()
  local _, before = core.sys.which(NAME, true)
  assert(core.fs.write_atomic(bin, "#!/bin/sh\n# another version\nexit 0\n", 493))
  local _, after = core.sys.which(NAME, true)
  ok(after ~= before, "a new id: " .. tostring(before) .. " / " .. tostring(after))
  eq(after, core.fs.file_id(bin), "still file_id's")
end)

test("a name that is not on PATH, or not executable: nil", function()
  eq(core.sys.which("ad-which-test-absent", true), nil, "absent")
  assert(core.fs.write_atomic(dir .. "/ad-which-test-plain", "x", 384))
  eq(core.sys.which("ad-which-test-plain", true), nil, "not executable")
end)

return tap.done()
