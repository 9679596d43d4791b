-- The start records of running dispatch spans (trace.started): written for
-- every span whose child still runs START_DELAY after it started, each at
-- its own time, never for one that ended sooner, all under one timer.
-- Run: AGENT_DISPATCH_TRACES_DIR=<empty dir> agent-dispatch run tests/lua/trace_start_queue_test.lua
local here = arg[0]:match("(.*/)") or "./"
local tap = dofile(here .. "tap.lua")
local test, eq = tap.test, tap.eq
local core = require "ad.core"
local store = require "ad.storage.traces"
local trace = require "ad.domain.trace"

-- The records of trace id written so far, "span_id:status" each, in order.
local function records(id)
  local out = {}
  local text = ""
  for _, n in ipairs(core.fs.listdir(store.dir()) or {}) do
    if n:match("^spans%-") then text = text .. (core.fs.read_file(store.dir() .. "/" .. n) or "") end
  end
  for line in text:gmatch("[^\n]+") do
    local s = require("ad.infra.json").decode(line)
    if s.trace_id == id then out[#out + 1] = s.span_id .. ":" .. s.status end
  end
  return table.concat(out, " ")
end

test("each running span's start is written at its own time; ended ones never", function()
  trace.START_DELAY = 0.3
  local ctx = { trace_id = trace.new_trace_id() }
  local function span() return trace.record(ctx, { kind = "dispatch", agent = "a", task = "t" }) end
  local a, b, quick = span(), span(), span()
  trace.started(a)
  trace.started(quick)
  trace.finish(quick, "ok", { success = true })
  eq(records(ctx.trace_id), quick.span_id .. ":ok", "a quick span: one record, at its end")
  core.task.sleep(0.15)
  trace.started(b)
  trace.started(b) -- twice: still one start record
  core.task.sleep(0.25) -- a: 0.4 s, b: 0.25 s
  eq(records(ctx.trace_id), quick.span_id .. ":ok " .. a.span_id .. ":running",
    "the first one's start, not yet the second's")
  core.task.sleep(0.2) -- b: 0.45 s
  eq(records(ctx.trace_id), quick.span_id .. ":ok " .. a.span_id .. ":running " ..
    b.span_id .. ":running", "then the second's")
  trace.finish(a, "ok", { success = true })
  trace.finish(b, "error", { success = false, error_type = "cli_error" })
  core.task.sleep(0.4)
  eq(select(2, records(ctx.trace_id):gsub(":", "")), 5, "their ends, and nothing more")
end)

return tap.done()
