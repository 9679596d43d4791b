-- The private-directory check (ad.storage.paths.private_dir) that the
-- jobs and traces stores share: a directory whose records are acted on as
-- real must be the user's own, not writable by group or others, and not a
-- symbolic link to one. Runs as root in CI: ownership is made with chown.
-- Run: agent-dispatch run tests/lua/private_dir_test.lua
local here = arg[0]:match("(.*/)") or "./"
local tap = dofile(here .. "tap.lua")
local test, eq, has = tap.test, tap.eq, tap.has
local core = require "ad.core"
local paths = require "ad.storage.paths"

local root = tap.tmpdir()
local function sh(cmd) assert(os.execute(cmd), cmd) end

local function refusal(d)
  local ok, err = pcall(paths.private_dir, d, "jobs", "AGENT_DISPATCH_JOBS_DIR")
  eq(ok, false, "refused: " .. d)
  eq(type(err), "table", "an error object")
  eq(err.type, "io", "an I/O error")
  return err.message
end

test("a missing or private directory is accepted as it is", function()
  eq(paths.private_dir(root .. "/none", "jobs", "AGENT_DISPATCH_JOBS_DIR"), root .. "/none")
  sh("mkdir -m 700 " .. root .. "/own")
  eq(paths.private_dir(root .. "/own", "jobs", "AGENT_DISPATCH_JOBS_DIR"), root .. "/own")
end)

test("a symbolic link to a private directory is refused, naming its target and the variable", function()
  sh("mkdir -m 700 " .. root .. "/real && ln -s " .. root .. "/real " .. root .. "/link")
  local msg = refusal(root .. "/link")
  has(msg, "refusing the jobs directory " .. root .. "/link: it is a symbolic link (to " ..
    root .. "/real); set AGENT_DISPATCH_JOBS_DIR to the directory itself")
end)

test("a directory writable by group or others is refused with the command that fixes it", function()
  sh("mkdir -m 700 " .. root .. "/open && chmod 770 " .. root .. "/open")
  has(refusal(root .. "/open"), "refusing the jobs directory " .. root ..
    "/open: it is writable by group or others (mode 770); run: chmod go-w " .. root .. "/open")
end)

test("a directory owned by another user is refused", function()
  sh("mkdir -m 700 " .. root .. "/theirs && chown 65534 " .. root .. "/theirs")
  has(refusal(root .. "/theirs"), "refusing the jobs directory " .. root ..
    "/theirs: it is owned by uid 65534, not by you (uid " .. core.sys.getuid() .. ")")
end)

os.exit(tap.done() and 0 or 1)
