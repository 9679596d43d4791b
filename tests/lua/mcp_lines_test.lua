-- ad.protocol.mcp_call's log_note and text_reply: the notifications/message line
-- of a call's log line and the reply line of a call with a text result,
-- written around their encoded parts, are byte for byte the lines the
-- generic encoder makes of the same objects: every level, messages and
-- texts of every kind (quotes, escapes, control characters, "/", UTF-8,
-- invalid UTF-8, empty, long, not a string), ids of every kind (strings,
-- integers, raw text), isError true, false or absent, both eras.
-- Run: agent-dispatch run tests/lua/mcp_lines_test.lua
local here = arg[0]:match("(.*/)") or "./"
local tap = dofile(here .. "tap.lua")
local test, eq = tap.test, tap.eq
local json = require "ad.infra.json"
local mcp = require "ad.protocol.mcp"
local call = require "ad.protocol.mcp_call"

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
      eq(call.log_note(lvl, msg), generic(lvl, msg), lvl .. " message " .. i)
    end
  end
end)

test("a table as the message is encoded as it is nested", function()
  local msg = json.object({ b = 1, a = json.array({ "x", json.null }) }, { "b", "a" })
  eq(call.log_note("info", msg), generic("info", msg))
end)

test("the logger follows the server's name", function()
  local name = mcp.NAME
  mcp.NAME = "other \"name\""
  eq(call.log_note("info", "m"), generic("info", "m"))
  mcp.NAME = name
  eq(call.log_note("info", "m"), generic("info", "m"))
end)

-- What Server:result writes for text_result(text, is_error), generically.
local META_SERVER = "io.modelcontextprotocol/serverInfo"
local function generic_reply(id, text, is_error, modern)
  local result = json.object({ content = json.array{ json.object({ type = "text", text = text },
    { "type", "text" }) }, isError = is_error }, { "content", "isError", "resultType", "_meta" })
  if modern then
    result.resultType = "complete"
    result._meta = json.object({ [META_SERVER] = mcp.server_info() }, { META_SERVER })
  end
  return json.encode(json.object({ jsonrpc = "2.0", id = id, result = result },
    { "jsonrpc", "id", "result" })) .. "\n"
end

test("a tool call's text reply: the line the generic encoder makes", function()
  local ids = { "abc", "quo\"te \\ é", 7, -3, 0, json.raw("12345678901234567890"),
    json.raw('"as written \\ud800"') }
  local texts = { '{"agent":"worker","success":true,"result":"stub ok: hi"}', "",
    "plain \"text\" with \n newline, tab \t, \1 and / slash", "UTF-8 日本語 🚀",
    "invalid \255 UTF-8", string.rep("x", 70000) }
  local n = 0
  for _, id in ipairs(ids) do
    for _, text in ipairs(texts) do
      for _, is_error in ipairs({ true, false, "none" }) do
        if is_error == "none" then is_error = nil end
        for _, modern in ipairs({ false, true }) do
          eq(call.text_reply(id, text, is_error, modern), generic_reply(id, text, is_error, modern),
            tostring(id) .. " / " .. text:sub(1, 20) .. " / " .. tostring(is_error) .. " / " ..
            tostring(modern))
          n = n + 1
        end
      end
    end
  end
  eq(n, 7 * 6 * 3 * 2)
end)

return tap.done()
