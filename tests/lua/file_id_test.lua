-- core.fs.file_id: "dev:ino:size:mtime_sec.mtime_nsec" in decimal, as
-- stat(1) reports them (the transport cache on disk and the config
-- re-read compare these strings).
-- Run: agent-dispatch run tests/lua/file_id_test.lua
local here = arg[0]:match("(.*/)") or "./"
local tap = dofile(here .. "tap.lua")
local test, eq = tap.test, tap.eq
local core = require "ad.core"

local function stat_id(path)
  local f = assert(io.popen("stat -c '%d:%i:%s:%Y %.9Y' '" .. path .. "'"))
  local out = f:read("l")
  f:close()
  local head, frac = out:match("^(%d+:%d+:%d+:%d+) %d+%.(%d+)$")
  return head .. "." .. math.tointeger(tonumber(frac))
end

test("matches stat(1) for a file, a directory and an empty file", function()
  local dir = tap.tmpdir()
  local file = dir .. "/f"
  local fh = assert(io.open(file, "w"))
  fh:write(string.rep("x", 12345))
  fh:close()
  local empty = dir .. "/e"
  assert(io.open(empty, "w")):close()
  -- A whole-second mtime (nanoseconds 0) and a large one.
  assert(os.execute("touch -d '2001-02-03 04:05:06' '" .. empty .. "'"))
  assert(os.execute("touch -d '2030-01-01 00:00:00.987654321' '" .. file .. "'"))
  for _, p in ipairs({ file, dir, empty, "/" }) do
    eq(core.fs.file_id(p), stat_id(p), p)
  end
  eq(core.fs.file_id(dir .. "/missing"), nil, "a missing file")
end)

test("changes when the file is replaced", function()
  local p = os.tmpname()
  local a = core.fs.file_id(p)
  local q = os.tmpname()
  assert(os.rename(q, p))
  local b = core.fs.file_id(p)
  eq(a ~= b, true, "a new inode gives a new id")
  os.remove(p)
end)

tap.done()
