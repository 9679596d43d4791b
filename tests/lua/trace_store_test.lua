-- The trace store (ad.storage.traces): spans of many trees in one file
-- per day, split into parts once a part is full, read back per trace in
-- the order written (only the lines holding the trace's id decoded),
-- listed newest first, and pruned a whole file at a time.
-- Run: AGENT_DISPATCH_TRACES_DIR=<empty dir> agent-dispatch run tests/lua/trace_store_test.lua
local here = arg[0]:match("(.*/)") or "./"
local tap = dofile(here .. "tap.lua")
local test, eq, ok = tap.test, tap.eq, tap.ok
local core = require "ad.core"
local store = require "ad.storage.traces"
local trace = require "ad.domain.trace"

local dir = store.dir()

local function files()
  local out = {}
  for _, n in ipairs(core.fs.listdir(dir) or {}) do
    if n:match("^spans%-") then out[#out + 1] = n end
  end
  table.sort(out)
  return out
end

test("a full part goes on in the next one; a trace reads back whole, in order", function()
  local before = #files()
  store.MAX_PART = 2000
  local a, b = trace.new_trace_id(), trace.new_trace_id()
  local n = 0
  for i = 1, 12 do
    for _, t in ipairs({ a, b }) do
      local span = trace.record({ trace_id = t }, { kind = "dispatch", agent = "x",
        task = ("task %d of %s "):format(i, t) .. ("y"):rep(100) })
      store.append(span)
      trace.finish(span, "ok", { success = true, cost_usd = 0.5 })
      n = n + 1
    end
  end
  store.MAX_PART = 32 * 1024 * 1024
  local names = files()
  ok(#names - before >= 4, "several parts: " .. table.concat(names, " "))
  for _, name in ipairs(names) do
    ok(name:match("^spans%-%d%d%d%d%d%d%d%d%.jsonl$") or name:match("^spans%-%d%d%d%d%d%d%d%d%.%d+%.jsonl$"), name)
    local _, _, mode = core.fs.stat(dir .. "/" .. name)
    eq(mode & 511, 384, name .. " mode")
  end
  local spans = store.read(a)
  eq(#spans, 12, "spans of a")
  for i, s in ipairs(spans) do
    eq(s.trace_id, a)
    ok(s.task:find("^task " .. i .. " of "), "in the order written: " .. s.task)
    eq(s.status, "ok", "the last record of each span")
  end
  local many = store.read_many({ a, b, ("0"):rep(32) })
  eq(#many[b], 12, "spans of b")
  eq(many[("0"):rep(32)], nil, "no such trace")
  local recent = store.recent(2)
  eq(recent[1], b, "newest first")
  eq(recent[2], a)
end)

test("a job's span finds its trace; prune removes whole day files by age", function()
  local t = trace.new_trace_id()
  local job = ("ab"):rep(16)
  local span = trace.record({ trace_id = t }, { kind = "async", agent = "x", task = "j", job_id = job })
  trace.write(span)
  eq(store.find_job(job), t)
  local old = dir .. "/spans-20000101.jsonl"
  assert(core.fs.write_atomic(old, '{"trace_id":"' .. ("c"):rep(32) .. '","span_id":"0000000000000001"}\n', 384))
  -- Not old enough yet: kept.
  eq(store.prune(3600), 0)
  ok(core.fs.stat(old), "a fresh file is kept")
  -- Written in the last day: kept whatever the age asked (a tree may run).
  eq(store.prune(0), 0, "prune(0) keeps files written in the last day")
  ok(core.fs.stat(old), "a fresh file is kept by prune(0)")
  local keep = store.KEEP_RECENT
  store.KEEP_RECENT = 0
  eq(store.prune(0) >= 2, true, "prune(0) removes every trace")
  store.KEEP_RECENT = keep
  eq(#files(), 0, "no day file left")
  -- The next span goes to a new file (the kept descriptor noticed).
  trace.write(trace.record({ trace_id = t }, { kind = "dispatch", agent = "x", task = "after" }))
  eq(#files(), 1)
  eq(#store.read(t), 1)
end)

os.exit(tap.done() and 0 or 1)
