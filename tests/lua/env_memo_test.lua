-- ad.infra.util.getenv: os.getenv, each variable read from the environment once,
-- and read again after core.sys.unsetenv (the only way this process's
-- environment changes after start). tests/CMakeLists.txt sets
-- AD_ENV_TEST_A and AD_ENV_TEST_B.
-- Run: agent-dispatch run tests/lua/env_memo_test.lua
local here = arg[0]:match("(.*/)") or "./"
local tap = dofile(here .. "tap.lua")
local test, eq = tap.test, tap.eq
local core = require "ad.core"
local getenv = require("ad.infra.util").getenv

test("the values os.getenv gives, unset ones nil", function()
  eq(getenv("AD_ENV_TEST_A"), "a value", "set")
  eq(getenv("AD_ENV_TEST_A"), os.getenv("AD_ENV_TEST_A"), "as os.getenv")
  eq(getenv("AD_ENV_TEST_UNSET"), nil, "unset")
  eq(getenv("AD_ENV_TEST_UNSET"), nil, "unset, asked again")
  eq(getenv("HOME"), os.getenv("HOME"), "HOME")
end)

test("core.sys.unsetenv: the variable is gone, the others read again as they are", function()
  eq(getenv("AD_ENV_TEST_B"), "b", "before")
  core.sys.unsetenv("AD_ENV_TEST_B")
  eq(getenv("AD_ENV_TEST_B"), nil, "after unsetenv")
  eq(os.getenv("AD_ENV_TEST_B"), nil, "os.getenv agrees")
  eq(getenv("AD_ENV_TEST_A"), "a value", "another variable")
end)

return tap.done()
