-- core.proc.spawn{classify = true}: p:read_line() gives each line with its
-- kind (the type a stream-json line's start names, "" for a JSON object
-- whose start names none, false for no JSON object), for lines read at once
-- and lines queued before the read alike; and ad.domain.channel reads a
-- live child's lines by that kind as it did by searching them.
-- Run: agent-dispatch run tests/lua/proc_classify_test.lua
local here = arg[0]:match("(.*/)") or "./"
local tap = dofile(here .. "tap.lua")
local test, eq = tap.test, tap.eq
local core = require "ad.core"
local channel = require "ad.domain.channel"

local LINES = {
  '{"type":"system","subtype":"init","session_id":"s-1"}',
  '{"type":"assistant","message":{"content":[{"type":"text","text":"a \\"result\\""}]}}',
  'plain text',
  '{"subtype":"x","type":"result"}',
  '{"type":"result","subtype":"success","result":"done","session_id":"s-1"}',
}

-- The child writes LINES (after `pause` seconds: the reader waits first).
local function spawn(opts, pause)
  local script = (pause and ("sleep " .. pause .. "; ") or "") .. "printf '%s\\n' \"$@\""
  opts.argv = { "/bin/sh", "-c", script, "sh", table.unpack(LINES) }
  return assert(core.proc.spawn(opts))
end

local function read_all(p)
  local got = {}
  while true do
    local line, kind = p:read_line()
    if not line then break end
    got[#got + 1] = { line, kind }
  end
  p:wait()
  p:close()
  return got
end

local WANT = { "system", "assistant", false, "", "result" }

for _, pause in ipairs({ false, 0.2 }) do
  test("classify: each line with its kind" .. (pause and " (reader waiting)" or " (queued)"), function()
    local p = spawn({ classify = true }, pause)
    if not pause then core.task.sleep(0.2) end -- every line queued first
    local got = read_all(p)
    eq(#got, #LINES)
    for i, g in ipairs(got) do
      eq(g[1], LINES[i], "line " .. i)
      eq(g[2], WANT[i], "kind of line " .. i)
    end
  end)
end

test("without classify: the line alone", function()
  for _, g in ipairs(read_all(spawn({}))) do eq(g[2], nil) end
end)

test("channel: the result decoded, other events not, stray text kept", function()
  local script = "printf '%s\\n' \"$@\"; cat >/dev/null"
  local argv = { "/bin/sh", "-c", script, "sh", LINES[1], LINES[2], LINES[3], LINES[5] }
  local ch = assert(channel.open{ argv = argv, first = "hi" })
  local kinds, plain = {}, {}
  local handlers = { on_line = function(l) plain[#plain + 1] = l end }
  while true do
    local kind, obj = ch:read_event(handlers)
    if kind == nil then break end
    kinds[#kinds + 1] = kind
    if kind == "result" then
      eq(obj.result, "done")
      ch:close()
    end
  end
  ch:wait()
  ch:release()
  eq(table.concat(kinds, ","), "system,,,result",
    "system decoded for the unknown session, then only the result")
  eq(ch.session_id, "s-1")
  eq(plain[1], "plain text")
  eq(#plain, 1)
end)

return tap.done()
