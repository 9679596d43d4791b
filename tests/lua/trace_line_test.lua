-- The line of a span (ad.storage.traces.line, formatted in C from the span
-- as it started) is byte for byte the record a full Lua table of the span
-- encodes to with ad.infra.json's encoder: same keys, order, types and
-- number texts, invalid UTF-8 repaired, long texts cut to fit MAX_LINE.
-- Run: agent-dispatch run tests/lua/trace_line_test.lua
local here = arg[0]:match("(.*/)") or "./"
local tap = dofile(here .. "tap.lua")
local test, eq, ok = tap.test, tap.eq, tap.ok
local core = require "ad.core"
local json = require "ad.infra.json"
local util = require "ad.infra.util"
local store = require "ad.storage.traces"
local trace = require "ad.domain.trace"

local DEPTH, PID = require("ad.domain.runner").depth(), core.sys.getpid()

-- The reference: the whole record of a span as a Lua table, encoded key
-- by key, with the free texts cut until the line fits.
local function record(ctx, f)
  return {
    trace_id = ctx.trace_id, span_id = f.span_id, parent_id = ctx.parent_id or json.null,
    kind = f.kind, agent = f.agent or json.null, task = util.cut(f.task or "", 200),
    caller = f.caller or json.null, goal = f.goal or json.null, start = f.start,
    status = "running", error_type = json.null, session_id = json.null, cost_usd = 0,
    num_turns = json.null, denied_tools = json.array(), cached = false, depth = DEPTH,
    pid = PID, job_id = f.job_id or json.null,
  }
end

local function finish(rec, status, r, t)
  rec["end"] = t
  rec.duration_ms = math.max(0, math.floor((t - rec.start) * 1000 + 0.5))
  rec.status = status
  if r then
    rec.error_type = (r.success == false and r.error_type) or json.null
    rec.session_id = r.session_id or json.null
    rec.cost_usd = type(r.cost_usd) == "number" and r.cost_usd or 0
    rec.num_turns = math.tointeger(r.num_turns) or json.null
    if r.denied_tools and #r.denied_tools > 0 then rec.denied_tools = json.array(util.copy(r.denied_tools)) end
    rec.cached = r.cached == true
  end
end

local function encoded(rec)
  local text = json.encode_fields(rec, store.KEYS)
  if #text >= store.MAX_LINE then
    for _, n in ipairs({ 100, 40, 0 }) do
      for _, k in ipairs({ "task", "caller", "goal" }) do
        if type(rec[k]) == "string" then rec[k] = util.cut(rec[k], n) end
      end
      text = json.encode_fields(rec, store.KEYS)
      if #text < store.MAX_LINE then break end
    end
  end
  return text
end

-- The span trace.record makes of fields under ctx, and the reference.
local function both(ctx, f)
  local span = trace.record(ctx, f)
  f.span_id, f.start = span.span_id, span.start
  return span, record(ctx, f)
end

local CTX = { trace_id = trace.new_trace_id() }
local UNDER = { trace_id = CTX.trace_id, parent_id = trace.new_id() }

local cases = {
  { "a dispatch", CTX, { kind = "dispatch", agent = "worker", task = "hi", caller = "t", goal = "g" } },
  { "no agent, caller or goal, under a parent", UNDER, { kind = "parallel", task = "three" } },
  { "an async job", CTX, { kind = "async", agent = "a", task = "j", job_id = "job-123" } },
  { "escapes", CTX, { kind = "dispatch", agent = "a/b", task = 'say "hi"\\\n\t\1\127 /path',
    caller = "c\r\n", goal = "\0nul" } },
  { "invalid UTF-8", CTX, { kind = "dispatch", agent = "\xff", task = "caf\xc3\xa9 \xc3 \xed\xa0\x80",
    caller = "ok \xe2\x82", goal = "\xf0\x9f\x98\x80" } },
  { "a task over 200 code points", CTX, { kind = "dispatch", agent = "a",
    task = string.rep("\xc3\xa9", 300) } },
  { "a long goal: the texts are cut", CTX, { kind = "dispatch", agent = "a",
    task = string.rep("t", 150), caller = string.rep("\"", 900), goal = string.rep("\xe2\x82\xac", 2000) } },
}

local results = {
  { "ok", { success = true, cost_usd = 0.0123, session_id = "s-1", num_turns = 3 } },
  { "ok", { success = true, cost_usd = 0.1 + 0.2, num_turns = 2.0, cached = true } },
  { "error", { success = false, error_type = "permission", cost_usd = 1 / 3,
    denied_tools = json.array({ "Bash", "Write" }), session_id = "s\"2" } },
  { "error", { success = false, cost_usd = "free", num_turns = "x" } },
  { "cancelled", nil },
  { "refused", { success = false, error_type = "budget" } },
}

for _, c in ipairs(cases) do
  test(c[1] .. ": the start record", function()
    local span, rec = both(c[2], c[3])
    eq(store.line(span, DEPTH), encoded(rec))
    ok(#store.line(span, DEPTH) < store.MAX_LINE, "a line below MAX_LINE")
  end)
  for i, res in ipairs(results) do
    test(c[1] .. ": the end record " .. i, function()
      local span, rec = both(c[2], c[3])
      local line = store.line(span, DEPTH, res[1], res[2])
      local t = json.decode(line)["end"]
      ok(type(t) == "number" and t >= span.start, "an end after the start")
      finish(rec, res[1], res[2], t)
      eq(line, encoded(rec))
    end)
  end
end

test("a span another process ends (its whole record, decoded) is written as it was", function()
  local span = both(UNDER, { kind = "handoff", agent = "a", task = "t", job_id = "j1" })
  span.reserved, span.adopted = true, true
  local full = trace.full(span)
  eq(full.reserved, nil, "only the record's fields")
  eq(full.depth, DEPTH)
  eq(store.line(full), store.line(span, DEPTH))
  local copy = json.decode(json.encode(full))
  copy.pid = PID + 1 -- (written as it came, not as this process's)
  local r = { success = true, cost_usd = 0.5, denied_tools = json.array({ "Edit" }) }
  local line = store.line(copy, nil, "ok", r)
  local rec = json.decode(store.line(full))
  rec.pid, rec.denied_tools = PID + 1, json.array()
  finish(rec, "ok", r, json.decode(line)["end"])
  eq(line, encoded(rec))
end)

test("a result whose fields an __index makes (collecting as it goes) is written whole", function()
  local span, rec = both(CTX, { kind = "dispatch", agent = "a", task = "t" })
  local made = { success = false, error_type = "tim" .. "eout", session_id = "s-" .. ("x"):rep(40),
    cost_usd = 0.25, num_turns = 4, cached = false }
  local r = setmetatable({}, { __index = function(_, k)
    collectgarbage("collect")
    local v = made[k]
    if type(v) == "string" then return v:sub(1) .. "" end -- a fresh string only r's caller holds
    return v
  end })
  local line = store.line(span, DEPTH, "error", r)
  finish(rec, "error", made, json.decode(line)["end"])
  eq(line, encoded(rec))
end)

test("a span field that holds a table other than denied_tools is refused", function()
  local span = both(CTX, { kind = "dispatch", agent = "a", task = "t" })
  span.agent = { "x" }
  local good, err = pcall(store.line, span, DEPTH)
  ok(not good and tostring(err):find("holds a table", 1, true), tostring(err))
  span.agent = "a"
  good, err = pcall(store.line, span, DEPTH, { "ok" })
  ok(not good and tostring(err):find("holds a table", 1, true), tostring(err))
end)

test("fields a caller keeps on a span are not written", function()
  local span = both(CTX, { kind = "dispatch", agent = "a", task = "t" })
  span.reserved, span.left, span.start_timer, span.ran = true, true, true, true
  ok(not store.line(span, DEPTH):find("reserved", 1, true), "no reserved")
  ok(not store.line(span, DEPTH):find("ran", 1, true), "no ran")
end)

test("span and trace ids: a per-process prefix and a counter", function()
  local a, b = trace.new_id(), trace.new_id()
  ok(a:match("^%x+$") and #a == 16, "16 hex digits")
  eq(a:sub(1, 8), b:sub(1, 8), "the prefix")
  eq(tonumber(b:sub(9), 16), tonumber(a:sub(9), 16) + 1, "the count")
  local t = trace.new_trace_id()
  ok(store.valid(t), "32 hex digits")
  eq(tonumber(t:sub(25), 16), tonumber(b:sub(9), 16) + 1, "one counter for both")
end)

return tap.done()
