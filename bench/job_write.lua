-- job_write.lua - the cost of one job state change, through the product's
-- own job store code, timed inside the product with core.task.now()
-- (CLOCK_MONOTONIC seconds). Run by the product:
--
--   AGENT_DISPATCH_JOBS_DIR=DIR agent-dispatch run bench/job_write.lua MODE N
--
-- MODE:
--   progress  one running job; N x jobs.update_progress(id, lines) with 5
--             progress lines of about 100 characters (a record of ~1 KB):
--             lock, read + decode the record, encode, write it atomically
--             (temp, fsync, rename, fsync of the directory), unlock.
--   create    N x jobs.create{...} (record write + index append).
--   finish    N jobs created (not timed), then N x jobs.finish(id, result):
--             a status change, so the index line is rewritten in place too.
--   parts     where the time of update_progress goes: N rounds each timing
--             jobs.get (read + decode), the encoding of the record,
--             core.jobs.write (the C atomic write, fsyncs included) and
--             taking + releasing the jobs lock.
-- Prints one line per timed operation: "LABEL MICROSECONDS", and first
-- "# bytes B" (the size of the record file written).
local core = require "ad.core"
local json = require "ad.infra.json"
local util = require "ad.infra.util"
local jobs = require "ad.storage.jobs"
local runner = require "ad.domain.runner"

local mode, n = arg[1], tonumber(arg[2])
assert(mode and n, "usage: job_write.lua progress|create|finish|parts N")

local FIELDS = { agent = "bench", task = "Review the diff in src/parser.c for " ..
  "memory leaks and report file:line for each", caller = "bench", goal = "g" }
local LINES = {}
for i = 1, 5 do
  LINES[i] = string.format("progress %d/5: reading src/module_%02d.c (the parser and its tests) and checking " ..
    "every allocation against its matching free on all paths of the module", i, i)
end
local RESULT = runner.result{ agent = "bench", success = true,
  result = "Done: no leaks found.", session_id = "00000000-0000-4000-8000-000000000000",
  cost_usd = 0.0213, duration_ms = 1234, num_turns = 3 }

local out = {}
local function emit(label, t0, t1)
  out[#out + 1] = string.format("%s %.1f", label, (t1 - t0) * 1e6)
end
local function size(id)
  local text = core.jobs.read(jobs.dir(), id)
  return #text
end

if mode == "progress" then
  local rec = jobs.create(FIELDS)
  assert(jobs.mark_running(rec.id, nil))
  assert(jobs.update_progress(rec.id, LINES))
  print("# bytes " .. size(rec.id))
  for _ = 1, n do
    local t0 = core.task.now()
    local ok = jobs.update_progress(rec.id, LINES)
    local t1 = core.task.now()
    assert(ok, "update_progress refused")
    emit("progress", t0, t1)
  end
elseif mode == "create" then
  local last
  for _ = 1, n do
    local t0 = core.task.now()
    last = jobs.create(FIELDS)
    local t1 = core.task.now()
    emit("create", t0, t1)
  end
  print("# bytes " .. size(last.id))
elseif mode == "finish" then
  local ids = {}
  for i = 1, n do
    ids[i] = jobs.create(FIELDS).id
    assert(jobs.mark_running(ids[i], nil))
  end
  for i = 1, n do
    local t0 = core.task.now()
    local ok = jobs.finish(ids[i], util.copy(RESULT))
    local t1 = core.task.now()
    assert(ok and ok.status == "done", "finish refused")
    emit("finish", t0, t1)
  end
  print("# bytes " .. size(ids[n]))
elseif mode == "parts" then
  local dir = jobs.dir()
  local rec = jobs.create(FIELDS)
  assert(jobs.mark_running(rec.id, nil))
  assert(jobs.update_progress(rec.id, LINES))
  print("# bytes " .. size(rec.id))
  for _ = 1, n do
    local t0 = core.task.now()
    local lock = assert(core.fs.lock(dir .. "/.jobs.lock", 10))
    lock:unlock()
    local t1 = core.task.now()
    local r = jobs.get(rec.id)
    local t2 = core.task.now()
    -- The encoding jobs.lua's write() does.
    r.progress = json.array(util.copy(LINES))
    r.progress_updated_at = core.task.time()
    local o = json.object(util.copy(r), jobs.KEYS)
    if o.progress then o.progress = json.array(o.progress) end
    local text = json.encode(o)
    local t3 = core.task.now()
    assert(core.jobs.write(dir, rec.id, text))
    local t4 = core.task.now()
    emit("lock", t0, t1)
    emit("get", t1, t2)
    emit("encode", t2, t3)
    emit("write", t3, t4)
  end
else
  error("unknown mode " .. tostring(mode))
end
print(table.concat(out, "\n"))
