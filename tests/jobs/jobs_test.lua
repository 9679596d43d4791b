-- Job store tests (F29-F34): transitions, cancellation outcomes, corrupt
-- records, listing through the index, gc and stale recovery.
-- Run: AGENT_DISPATCH_JOBS_DIR=/tmp/x/jobs agent-dispatch run tests/jobs/jobs_test.lua
-- The jobs dir is emptied first, so it must be a test directory.
local here = arg[0]:match("(.*/)") or "./"
local tap = dofile(here .. "../lua/tap.lua")
local test, eq, ok, has = tap.test, tap.eq, tap.ok, tap.has
local core = require "ad.core"
local json = require "ad.infra.json"
local jobs = require "ad.storage.jobs"

local DIR = os.getenv("AGENT_DISPATCH_JOBS_DIR")
if not DIR or DIR == "" or not (DIR:find("test", 1, true) or DIR:find("tmp", 1, true)) then
  print("Bail out! AGENT_DISPATCH_JOBS_DIR must name a test directory (it is emptied)")
  return false
end

local function path(id) return DIR .. "/" .. id .. ".json" end

--- Empties the jobs dir (records, index, temp files, lock).
local function wipe()
  for _, name in ipairs(core.fs.listdir(DIR) or {}) do core.fs.unlink(DIR .. "/" .. name) end
end

local function names()
  local out = {}
  for _, n in ipairs(core.fs.listdir(DIR) or {}) do out[#out + 1] = n end
  table.sort(out)
  return out
end

local function no_tmp()
  for _, n in ipairs(names()) do ok(not n:find("%.tmp$"), "temp file left: " .. n) end
end

--- Writes a record exactly as given (bypassing the transitions), then
--- rebuilds the index from the files, as after an upgrade or a crash.
local function plant(fields)
  fields.id = fields.id or core.text.hex32()
  local rec = json.object(fields, jobs.KEYS)
  assert(core.jobs.write(DIR, rec.id, json.encode(rec)))
  jobs.rebuild_index()
  return rec.id
end

local function set_mtime(id, t)
  assert(os.execute(string.format("touch -d @%d '%s'", math.floor(t), path(id))))
end

local function result(success, text, extra)
  local r = { agent = "a", success = success, result = text or "", cost_usd = 0.02 }
  for k, v in pairs(extra or {}) do r[k] = v end
  return r
end

local function ids(list)
  local out = {}
  for i, r in ipairs(list) do out[i] = r.id end
  return table.concat(out, ",")
end

test("create: pending record, 0600 file in a 0700 dir, optional fields omitted", function()
  wipe()
  local t0 = core.task.time()
  local rec = jobs.create{ agent = "a", task = "do it", context = "ctx", caller = "me", goal = "" }
  ok(jobs.valid(rec.id) and #rec.id == 32, "32-hex id")
  eq(rec.status, "pending")
  ok(rec.created_at >= t0 - 0.01, "created_at")
  local _, _, mode = core.fs.stat(path(rec.id))
  eq(mode, 384, "record mode 0600")
  local _, _, dmode = core.fs.stat(DIR)
  eq(dmode, 448, "dir mode 0700")
  local got = jobs.get(rec.id)
  eq(got.agent, "a"); eq(got.task, "do it"); eq(got.context, "ctx"); eq(got.caller, "me")
  eq(got.goal, nil, "empty goal omitted"); eq(got.started_at, nil); eq(got.completed_at, nil)
  local text = assert(core.fs.read_file(path(rec.id)))
  ok(not text:find("null"), "no null fields on disk: " .. text)
  ok(not text:find('"goal"'), "no goal key")
  no_tmp()
end)

test("get: invalid ids are refused before any path is built", function()
  wipe()
  -- A Job-shaped file one level up must not be reachable.
  local parent = DIR:match("(.*)/[^/]+$")
  local id = core.text.hex32()
  assert(core.fs.write_atomic(parent .. "/" .. id .. ".json",
    json.encode({ id = id, agent = "x", task = "t", status = "done", created_at = 1 })))
  eq(jobs.get("../" .. id), nil, "traversal")
  eq(jobs.get(id:upper()), nil, "uppercase")
  eq(jobs.get(id:sub(1, 31)), nil, "31 chars")
  eq(jobs.get(id .. "0"), nil, "33 chars")
  eq(jobs.get(id .. "\n"), nil, "trailing newline")
  eq(jobs.get(""), nil, "empty")
  eq(jobs.get(nil), nil, "nil")
  eq(jobs.get(id), nil, "missing")
  eq(jobs.mark_running("../" .. id), nil)
  eq(jobs.finish("../" .. id, result(true, "x")), nil)
  local _, outcome = jobs.cancel("../" .. id, true)
  eq(outcome, "not_found")
  core.fs.unlink(parent .. "/" .. id .. ".json")
  eq(#names(), 0, "nothing created by invalid ids")
end)

test("mark_running: only from pending", function()
  wipe()
  local t0 = core.task.time()
  local id = jobs.create{ agent = "a", task = "t" }.id
  local rec = jobs.mark_running(id, { pid = 123, pgid = 123, start = 5, server_pid = 1 })
  eq(rec.status, "running")
  ok(rec.started_at >= t0, "started_at")
  eq(jobs.get(id).process.pgid, 123, "process identity recorded")
  local started = jobs.get(id).started_at
  eq(jobs.mark_running(id), nil, "running -> running refused")
  eq(jobs.get(id).started_at, started, "started_at untouched")
  for _, st in ipairs({ "done", "failed", "cancelled" }) do
    local x = jobs.create{ agent = "a", task = st }.id
    if st == "done" then jobs.finish(x, result(true, "r"))
    elseif st == "failed" then jobs.fail(x, "boom")
    else jobs.cancel(x) end
    eq(jobs.get(x).status, st)
    eq(jobs.mark_running(x), nil, "mark_running on " .. st)
    eq(jobs.get(x).status, st, st .. " unchanged")
    eq(jobs.get(x).started_at, nil, st .. " never started")
  end
  eq(jobs.mark_running(core.text.hex32()), nil, "unknown id")
end)

test("update_progress: non-terminal only; replaces the tail; survives finish", function()
  wipe()
  local id = jobs.create{ agent = "a", task = "t" }.id
  jobs.mark_running(id)
  local rec = jobs.update_progress(id, { "one", "two" })
  eq(#rec.progress, 2)
  ok(rec.progress_updated_at, "progress_updated_at")
  rec = jobs.update_progress(id, { "three" })
  eq(json.encode(jobs.get(id).progress), '["three"]', "replaced and persisted")
  rec = jobs.finish(id, result(true, "final"))
  eq(rec.status, "done")
  eq(json.encode(jobs.get(id).progress), '["three"]', "progress kept after finish")
  eq(jobs.update_progress(id, { "late" }), nil, "terminal refused")
  eq(json.encode(jobs.get(id).progress), '["three"]', "unchanged")
  eq(jobs.update_progress(core.text.hex32(), { "x" }), nil, "unknown id")
  local p = jobs.create{ agent = "a", task = "pending" }.id
  ok(jobs.update_progress(p, { "queued" }), "pending is non-terminal")
end)

test("finish / fail: outcomes, and refused on terminal records", function()
  wipe()
  local a = jobs.create{ agent = "a", task = "ok" }.id
  jobs.mark_running(a)
  local rec = jobs.finish(a, result(true, "fine"))
  eq(rec.status, "done"); ok(rec.completed_at, "completed_at"); eq(rec.error, nil)
  eq(jobs.get(a).result.result, "fine"); eq(jobs.get(a).result.cost_usd, 0.02)
  eq(jobs.get(a).process, nil, "process cleared")
  eq(jobs.finish(a, result(true, "second")), nil, "finish on done refused")
  eq(jobs.get(a).result.result, "fine", "first result kept")
  eq(jobs.fail(a, "late"), nil, "fail on done refused")
  eq(jobs.get(a).status, "done")

  local b = jobs.create{ agent = "a", task = "bad" }.id
  jobs.mark_running(b)
  rec = jobs.finish(b, result(false, "", { error = "oops", error_type = "cli_error" }))
  eq(rec.status, "failed"); eq(rec.error, "oops"); eq(jobs.get(b).result.error_type, "cli_error")

  local c = jobs.create{ agent = "a", task = "crash" }.id
  jobs.mark_running(c)
  rec = jobs.fail(c, "Worker crashed: x")
  eq(rec.status, "failed"); eq(rec.error, "Worker crashed: x"); eq(jobs.get(c).result, nil)
  eq(jobs.finish(c, result(true, "late")), nil, "finish on failed refused")
  eq(jobs.get(c).result, nil)

  eq(jobs.finish(core.text.hex32(), result(true, "x")), nil, "unknown id")
  eq(jobs.fail(core.text.hex32(), "x"), nil, "unknown id")
  no_tmp()
end)

test("create_completed: done / failed with timestamps and result", function()
  wipe()
  local rec = jobs.create_completed({ agent = "a", task = "t", caller = "c" }, result(true, "big"))
  eq(rec.status, "done"); eq(rec.started_at, rec.created_at); eq(rec.completed_at, rec.created_at)
  eq(jobs.get(rec.id).result.result, "big"); eq(jobs.get(rec.id).caller, "c")
  local f = jobs.create_completed({ agent = "a", task = "t" }, result(false, "", { error = "nope" }))
  eq(f.status, "failed"); eq(jobs.get(f.id).error, "nope")
  eq(#jobs.list("done"), 1); eq(#jobs.list("failed"), 1)
end)

test("cancel: not_found / cancelled / running / cancelled_running / already_terminal", function()
  wipe()
  local rec, outcome = jobs.cancel(core.text.hex32())
  eq(rec, nil); eq(outcome, "not_found")

  local p = jobs.create{ agent = "a", task = "queued" }.id
  rec, outcome = jobs.cancel(p)
  eq(outcome, "cancelled"); eq(rec.status, "cancelled"); ok(rec.completed_at, "completed_at")
  has(rec.error, "Cancelled before execution")
  eq(jobs.get(p).status, "cancelled", "persisted")
  eq(jobs.mark_running(p), nil, "a cancelled job never starts")

  local p2 = jobs.create{ agent = "a", task = "queued, forced" }.id
  rec, outcome = jobs.cancel(p2, true)
  eq(outcome, "cancelled", "force on pending")

  local r = jobs.create{ agent = "a", task = "running" }.id
  jobs.mark_running(r, { pid = 1, pgid = 1, start = 1, server_pid = 1 })
  jobs.update_progress(r, { "step 1" })
  rec, outcome = jobs.cancel(r)
  eq(outcome, "running"); eq(rec.status, "running")
  eq(jobs.get(r).status, "running", "untouched without force")
  eq(jobs.get(r).completed_at, nil)

  rec, outcome = jobs.cancel(r, true)
  eq(outcome, "cancelled_running"); eq(rec.status, "cancelled")
  has(rec.error, "killed"); ok(rec.completed_at, "completed_at")
  eq(jobs.get(r).process, nil, "process identity cleared")
  -- The worker's late result is discarded; the progress tail is kept.
  eq(jobs.finish(r, result(true, "late")), nil, "late finish refused")
  eq(jobs.fail(r, "late failure"), nil, "late fail refused")
  local after = jobs.get(r)
  eq(after.status, "cancelled"); eq(after.result, nil); has(after.error, "killed")
  eq(json.encode(after.progress), '["step 1"]')

  rec, outcome = jobs.cancel(r, true)
  eq(outcome, "already_terminal"); eq(rec.status, "cancelled")
  local d = jobs.create{ agent = "a", task = "done" }.id
  jobs.finish(d, result(true, "r"))
  local before = assert(core.fs.read_file(path(d)))
  rec, outcome = jobs.cancel(d)
  eq(outcome, "already_terminal"); eq(rec.status, "done")
  eq(core.fs.read_file(path(d)), before, "terminal record untouched")
end)

test("corrupt records are skipped by get and list", function()
  wipe()
  local good = jobs.create{ agent = "a", task = "good" }.id
  local bad = core.text.hex32()
  assert(core.jobs.write(DIR, bad, "{not json"))
  local arr = core.text.hex32()
  assert(core.jobs.write(DIR, arr, "[1, 2]"))
  local noid = core.text.hex32()
  assert(core.jobs.write(DIR, noid, '{"status": "done"}'))
  assert(core.fs.write_atomic(DIR .. "/broken.json", "{}"))
  for _, id in ipairs({ bad, arr, noid }) do
    core.jobs.index_add(DIR, id, core.task.time(), "pending")
  end
  eq(jobs.get(bad), nil); eq(jobs.get(arr), nil); eq(jobs.get(noid), nil)
  eq(ids(jobs.list()), good, "list skips corrupt records")
  eq(ids(jobs.list("pending")), good)
  -- A rebuild from the files also skips them.
  core.fs.unlink(DIR .. "/.index")
  eq(ids(jobs.list()), good, "rebuilt index skips corrupt records")
end)

test("damaged records: a status that is no status is unreadable; gc removes damaged files by age", function()
  wipe()
  local good = jobs.create{ agent = "a", task = "good" }.id
  local odd = core.text.hex32()
  assert(core.jobs.write(DIR, odd, '{"id":"' .. odd .. '","status":5,"agent":{},"created_at":1}'))
  eq(jobs.get(odd), nil, "a numeric status is not a status")
  local torn = core.text.hex32()
  assert(core.jobs.write(DIR, torn, '{"id":'))
  local fresh = core.text.hex32()
  assert(core.jobs.write(DIR, fresh, '{"id":'))
  set_mtime(odd, core.task.time() - 30 * 86400)
  set_mtime(torn, core.task.time() - 30 * 86400)
  eq(jobs.gc(7 * 86400), 2, "the two old damaged files are removed")
  ok(not core.fs.stat(path(odd)) and not core.fs.stat(path(torn)))
  ok(core.fs.stat(path(fresh)), "a recent one is left (it may be someone's, being looked at)")
  eq(ids(jobs.list()), good)
end)

test("a record under another job's name is not that job: get and list skip it", function()
  wipe()
  local real = jobs.create{ agent = "a", task = "real" }.id
  local copy = core.text.hex32()
  assert(core.jobs.write(DIR, copy, assert(core.jobs.read(DIR, real))))
  core.jobs.index_add(DIR, copy, core.task.time(), "pending")
  eq(jobs.get(copy), nil, "the copy reads as job " .. real)
  eq(ids(jobs.list()), real, "listed twice")
  core.fs.unlink(DIR .. "/.index")
  eq(ids(jobs.list()), real, "a rebuilt index lists it twice")
end)

test("list: newest first, status filter, limit", function()
  wipe()
  eq(#jobs.list(), 0, "empty store")
  local made = {}
  for i = 1, 5 do
    made[i] = jobs.create{ agent = "a", task = "job " .. i }.id
    core.task.sleep(0.002)
  end
  jobs.mark_running(made[2])
  jobs.finish(made[3], result(true, "r"))
  jobs.cancel(made[4])
  eq(ids(jobs.list()), table.concat({ made[5], made[4], made[3], made[2], made[1] }, ","))
  eq(ids(jobs.list(nil, 2)), made[5] .. "," .. made[4], "limit 2")
  eq(ids(jobs.list("pending")), made[5] .. "," .. made[1])
  eq(ids(jobs.list("pending", 1)), made[5], "filter + limit")
  eq(ids(jobs.list("running")), made[2])
  eq(ids(jobs.list("done")), made[3])
  eq(ids(jobs.list("cancelled")), made[4])
  eq(#jobs.list("failed"), 0)
  eq(#jobs.list(nil, 0), 0, "limit 0")
end)

test("list: the index is rebuilt when deleted or malformed", function()
  wipe()
  local a = jobs.create{ agent = "a", task = "first" }.id
  core.task.sleep(0.002)
  local b = jobs.create{ agent = "a", task = "second" }.id
  jobs.finish(b, result(true, "r"))
  core.fs.unlink(DIR .. "/.index")
  eq(ids(jobs.list()), b .. "," .. a, "rebuilt from the records")
  ok(core.fs.stat(DIR .. "/.index"), "index written again")
  eq(ids(jobs.list("done")), b, "rebuilt statuses")
  -- A torn index (partial record) is rebuilt too.
  local f = assert(io.open(DIR .. "/.index", "a"))
  f:write("torn")
  f:close()
  eq(ids(jobs.list()), b .. "," .. a, "rebuilt after a torn write")
  local c = jobs.create{ agent = "a", task = "third" }.id
  eq(ids(jobs.list(nil, 1)), c, "appends after the rebuild")
  -- A status change of a job missing from the index adds it.
  local planted = plant{ agent = "a", task = "planted", status = "pending", created_at = core.task.time() + 10 }
  local text = assert(core.fs.read_file(DIR .. "/.index"))
  core.jobs.index_write(DIR, {})
  ok(#assert(core.fs.read_file(DIR .. "/.index")) == 0 and #text > 0, "index emptied")
  jobs.cancel(planted)
  -- The emptied index no longer covers the directory: every record is
  -- listed again (reconciled), not only the one whose status changed.
  eq(ids(jobs.list()), planted .. "," .. c .. "," .. b .. "," .. a, "reconciled with the files")
  no_tmp()
end)

test("gc: terminal only, by age; gc(0) removes every terminal record", function()
  wipe()
  local now = core.task.time()
  local day = 86400
  local old_done = plant{ agent = "a", task = "old", status = "done", created_at = now - 31 * day,
                          completed_at = now - 30 * day }
  local old_failed = plant{ agent = "a", task = "old f", status = "failed", created_at = now - 40 * day }
  local fresh_done = plant{ agent = "a", task = "fresh", status = "done", created_at = now - 60,
                            completed_at = now - 30 }
  local old_pending = plant{ agent = "a", task = "p", status = "pending", created_at = now - 365 * day }
  local old_running = plant{ agent = "a", task = "r", status = "running", created_at = now - 364 * day,
                             started_at = now - 365 * day }
  -- completed recently although created long ago: kept by a 7-day gc.
  local late = plant{ agent = "a", task = "late", status = "cancelled", created_at = now - 20 * day,
                      completed_at = now - day }
  eq(jobs.gc(7 * day), 2, "purged the 30/40-day-old terminal jobs")
  eq(jobs.get(old_done), nil); eq(jobs.get(old_failed), nil)
  ok(jobs.get(fresh_done) and jobs.get(late), "recent terminal jobs kept")
  ok(jobs.get(old_pending) and jobs.get(old_running), "pending/running never deleted")
  eq(#jobs.list(), 4, "index follows")
  eq(jobs.gc(7 * day), 0, "idempotent")
  eq(jobs.gc(0), 2, "gc(0): every terminal job")
  eq(ids(jobs.list()), old_running .. "," .. old_pending)
  ok(not core.fs.stat(path(fresh_done)), "file deleted")
  wipe()
  eq(jobs.gc(0), 0, "empty store")
  no_tmp()
end)

test("recover_stale: old running (old mtime) and day-old pending fail with Abandoned", function()
  wipe()
  local now = core.task.time()
  local h = 3600
  local stale_run = plant{ agent = "a", task = "stale run", status = "running",
                           created_at = now - 2 * h - 5, started_at = now - 2 * h }
  set_mtime(stale_run, now - 2 * h)
  local live_file = plant{ agent = "a", task = "fresh file", status = "running",
                           created_at = now - 3 * h, started_at = now - 3 * h }
  -- (its mtime is now: a live worker wrote progress recently)
  local recent_run = plant{ agent = "a", task = "recent", status = "running",
                            created_at = now - 60, started_at = now - 60 }
  set_mtime(recent_run, now - 2 * h)
  local stale_pending = plant{ agent = "a", task = "stale pending", status = "pending",
                               created_at = now - 2 * 86400 }
  set_mtime(stale_pending, now - 2 * 86400)
  local pending_2h = plant{ agent = "a", task = "queued 2h", status = "pending", created_at = now - 2 * h }
  set_mtime(pending_2h, now - 2 * h)
  local old_done = plant{ agent = "a", task = "done", status = "done", created_at = now - 9 * h,
                          completed_at = now - 8 * h }
  set_mtime(old_done, now - 8 * h)
  -- A running record whose recorded child is a recycled pid (this very
  -- process, but a different start time) is not kept alive by it.
  local mypgid, mystart = core.jobs.proc_identity(core.sys.getpid())
  local recycled = plant{ agent = "a", task = "recycled pid", status = "running",
                          created_at = now - 2 * h, started_at = now - 2 * h,
                          process = { pid = core.sys.getpid(), pgid = mypgid, start = mystart + 1,
                                      server_pid = 999999 } }
  set_mtime(recycled, now - 2 * h)

  eq(jobs.recover_stale(), 3, "recovered count")
  local r = jobs.get(stale_run)
  eq(r.status, "failed"); has(r.error, "Abandoned"); has(r.error, "running"); ok(r.completed_at, "completed")
  local p = jobs.get(stale_pending)
  eq(p.status, "failed"); has(p.error, "Abandoned"); has(p.error, "pending")
  eq(jobs.get(recycled).status, "failed", "recycled pid does not veto")
  eq(jobs.get(live_file).status, "running", "fresh mtime vetoes")
  eq(jobs.get(recent_run).status, "running", "recent job left alone")
  eq(jobs.get(pending_2h).status, "pending", "2-hour-old pending left alone")
  eq(jobs.get(old_done).status, "done", "terminal ignored")
  eq(jobs.get(old_done).error, nil)
  eq(jobs.recover_stale(), 0, "second pass: nothing left")
  -- Recovered jobs are terminal, so gc collects them.
  eq(jobs.gc(0), 4)
  ok(jobs.get(live_file) and jobs.get(recent_run) and jobs.get(pending_2h), "live ones kept")
end)

test("recover_stale: a runner killed between its record write and the index update is settled", function()
  wipe()
  -- The index says pending (jobs.create); the record says running, as a
  -- runner's start writes it just before the index line changes. Its
  -- runner (owner) and child are gone: a SIGKILL landed in between.
  local rec = jobs.create{ agent = "a", task = "killed mid-write" }
  local now = core.task.time()
  local w = json.object({ id = rec.id, agent = "a", task = rec.task, status = "running",
    created_at = rec.created_at, started_at = now,
    server = json.object({ pid = 999999, start = 1 }, { "pid", "start" }),
    process = { pid = 999999, pgid = 999999, start = 1 } }, jobs.KEYS)
  assert(core.jobs.write(DIR, rec.id, json.encode(w)))
  eq(jobs.recover_stale(), 1, "settled at once, not left pending in the index for ever")
  local r = jobs.get(rec.id)
  eq(r.status, "failed")
  has(r.error, "Server stopped while the job was running")
  eq(#jobs.list("failed"), 1, "the index follows the record")
  eq(jobs.recover_stale(), 0, "second pass: nothing left")
end)

test("list by status: a writer killed between the record and its index line leaves a listing that follows the record", function()
  wipe()
  local rec = jobs.create{ agent = "a", task = "failed mid-write" }
  -- The writer dies right after the record's write: its index update
  -- never happens (within one tick of the file-time clock of the create,
  -- so the directory's mtime does not tell).
  local index_set = core.jobs.index_set
  core.jobs.index_set = function() error("killed", 0) end
  local died, err = pcall(jobs.fail, rec.id, "boom")
  core.jobs.index_set = index_set
  ok(not died and err == "killed", "the writer died mid-change")
  eq(jobs.get(rec.id).status, "failed", "the record was written")
  local failed = jobs.list("failed")
  eq(#failed, 1, "found under the status its record has")
  eq(failed[1] and failed[1].id, rec.id)
  eq(#jobs.list("pending"), 0, "not under the index's stale status")
  eq(#jobs.list("failed", 1), 1, "with a limit too")
  -- Killed before the record's write: nothing changed, nothing listed twice.
  local other = jobs.create{ agent = "a", task = "killed before writing" }
  local write = core.jobs.write
  core.jobs.write = function() error("killed", 0) end
  pcall(jobs.fail, other.id, "boom")
  core.jobs.write = write
  eq(#jobs.list("pending"), 1)
  eq(#jobs.list(), 2)
end)

test("recover_stale: a verifiably live recorded child vetoes; the index is rebuilt", function()
  wipe()
  local now = core.task.time()
  local mypgid, mystart = core.jobs.proc_identity(core.sys.getpid())
  local alive = plant{ agent = "a", task = "child alive", status = "running",
                       created_at = now - 7200, started_at = now - 7200,
                       process = { pid = core.sys.getpid(), pgid = mypgid, start = mystart,
                                   server_pid = 999999 } }
  set_mtime(alive, now - 7200)
  local stale = plant{ agent = "a", task = "stale", status = "running",
                       created_at = now - 7200, started_at = now - 7200 }
  set_mtime(stale, now - 7200)
  core.fs.unlink(DIR .. "/.index") -- records written by an older version: no index
  eq(jobs.recover_stale(), 1)
  eq(jobs.get(alive).status, "running", "live child: left running")
  eq(jobs.get(stale).status, "failed")
  -- A planted file with an invalid id is ignored without a crash.
  assert(core.fs.write_atomic(DIR .. "/..evil.json", json.encode({ id = "../evil", status = "running",
    created_at = 1, started_at = 1 })))
  core.fs.unlink(DIR .. "/.index")
  eq(jobs.recover_stale(), 0)
end)

return tap.done()
