-- ad.protocol.mcp.log_note: the notifications/message line of a call's log
-- line, written around the encoded message, is byte for byte the line the
-- generic encoder makes of the same object, for every level and for
-- messages of every kind (quotes, escapes, control characters, "/",
-- UTF-8, invalid UTF-8, empty, long, not a string).
-- Run: agent-dispatch run tests/lua/mcp_lines_test.lua
local here = arg[0]:match("(.*/)") or "./"
local tap = dofile(here .. "tap.lua")
local test, eq = tap.test, tap.eq
local json = require "ad.infra.json"
local mcp = require "ad.protocol.mcp"

local function generic(lvl, msg)
  return json.encode(json.object({ jsonrpc = "2.0", method = "notifications/message",
    params = json.object({ level = lvl, logger = mcp.NAME, data = msg },
                         { "level", "logger", "data" }) },
    { "jsonrpc", "method", "params" })) .. "\n"
end

local LEVELS = { "debug", "info", "notice", "warning", "error", "critical", "alert", "emergency" }

local MESSAGES = {
  "Dispatching to worker: hi...",
  "",
  "quote \" backslash \\ slash / tab \t newline \n return \r",
  "control \1\2\31 and \127",
  "UTF-8: é ü 日本語 🚀",
  "invalid UTF-8: \255\254 and a cut \226\130",
  "a lone surrogate escape stays text: \\ud800",
  string.rep("long line ", 2000),
  42,
  1.5,
  true,
}

test("every level and message: the line the generic encoder makes", function()
  for _, lvl in ipairs(LEVELS) do
    for i, msg in ipairs(MESSAGES) do
      eq(mcp.log_note(lvl, msg), generic(lvl, msg), lvl .. " message " .. i)
    end
  end
end)

test("a table as the message is encoded as it is nested", function()
  local msg = json.object({ b = 1, a = json.array({ "x", json.null }) }, { "b", "a" })
  eq(mcp.log_note("info", msg), generic("info", msg))
end)

test("the logger follows the server's name", function()
  local name = mcp.NAME
  mcp.NAME = "other \"name\""
  eq(mcp.log_note("info", "m"), generic("info", "m"))
  mcp.NAME = name
  eq(mcp.log_note("info", "m"), generic("info", "m"))
end)

return tap.done()
