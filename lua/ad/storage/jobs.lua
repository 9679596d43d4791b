--- The job store (F29-F34): one JSON record per job, shared by every server
--- process and the CLI on the machine. Every mutation re-reads the record
--- and runs under the jobs lock (<dir>/.jobs.lock); nothing yields while
--- the lock is held. Transitions refuse rather than overwrite: a finished
--- or cancelled job never changes again.
---
--- Records also carry `process` = {pid, pgid, start, server_pid,
--- server_start, mark} while a child runs, so a job whose server has exited
--- can still be cancelled: its group is signalled only when pid, process
--- group AND start time all still match (a recycled pid never does). mark,
--- an entry of the child's environment no other dispatch has, finds what
--- is left of its group once the child itself is gone (settle_orphan). See
--- SECURITY.md. `server` = {pid, start} names the process that runs the
--- job's worker (a server, or the detached job runner of a job that
--- outlives its server), so a job whose owner is gone is settled at once.
--- `request` holds what that runner needs to rebuild the request.
---
--- Over 500 lines on purpose: the records, the fixed-width index and the
--- maintenance (retention, stale-job recovery) share the record format, the
--- lock discipline and the transition rules above; split, each part would
--- have to re-check what the others guarantee.
local core = require "ad.core"
local json = require "ad.infra.json"
local util = require "ad.infra.util"
local config = require "ad.storage.config"
local errors = require "ad.infra.errors"
local paths = require "ad.storage.paths"

local M = {}

M.STATUSES = { "pending", "running", "done", "failed", "cancelled" }
M.TERMINAL = { done = true, failed = true, cancelled = true }
M.KEYS = { "id", "agent", "task", "context", "caller", "goal", "status",
  "created_at", "started_at", "completed_at", "result", "error", "progress",
  "progress_updated_at", "process", "server", "request", "session_id",
  "messages", "permissions", "fanout", "task_token", "result_read" }
--- The fields of `request`: what a detached job runner (ad.domain.jobrunner)
--- needs besides agent, task, context, caller and goal to run the job.
M.REQUEST_KEYS = { "response_format", "response_schema", "session_id", "timeout", "group",
  "trace" }
M.STALE_RUNNING = 3600
M.STALE_PENDING = 24 * 3600

local io_error = errors.raise_io

-- Records are shown and acted on as real (results, pids to signal): a
-- directory someone else owns or may write, or a link to one, could hold
-- forged ones.
function M.dir()
  return paths.state_dir("jobs", "AGENT_DISPATCH_JOBS_DIR")
end

function M.ensure_dir()
  local dir = M.dir()
  local ok, err, code = core.fs.mkdirs(dir, 448)
  if not ok then io_error("cannot create the jobs directory", err, code) end
  return dir
end

local shared -- nil: not tried yet; true/false: the slot directory is used

--- Sets this process's concurrency limit (settings.max_concurrency) and,
--- the first time, shares it with every agent-dispatch process using the
--- same jobs directory (slot files in <dir>/slots, see core.limiter): the
--- limit then holds for all their children together. A jobs directory
--- that cannot be used leaves the limit per process, with a warning.
function M.share_limit(n)
  core.limiter.set_limit(n)
  if shared ~= nil then return end
  local ok, err = pcall(function()
    local dir = M.ensure_dir() .. "/slots"
    local done, msg = core.limiter.share(dir)
    if not done then io_error("cannot share the concurrency limit", msg) end
  end)
  shared = ok
  if not ok then
    io.stderr:write("agent-dispatch: ", type(err) == "table" and tostring(err.message) or
      tostring(err), "; settings.max_concurrency holds for this process only\n")
  end
end

function M.valid(id)
  return core.text.valid_job_id(id)
end

local STATUSES = { pending = true, running = true, done = true, failed = true, cancelled = true }

local function decode(text, id)
  -- (shaped where an answer's [] must stay [] through the record: only a
  -- record that carries one pays for it, a write holds the jobs lock)
  local shaped = text:find('"structured_output"', 1, true) or text:find('"parsed_result"', 1, true)
  local rec = shaped and json.decode_shaped(text) or json.decode(text)
  -- (a record is the job its file names: a copy under another name is not)
  if type(rec) ~= "table" or json.is_array(rec) or type(rec.id) ~= "string"
      or rec.id ~= id or not STATUSES[rec.status] then
    return nil
  end
  rec = json.denull(rec)
  -- The relay's lists stay lists when empty (JSON [] decodes to a table
  -- that would be written back as {}).
  local p = rec.permissions
  if type(p) == "table" then
    rec.permissions = json.object({ pending = json.array(type(p.pending) == "table" and p.pending or {}),
      decisions = json.array(type(p.decisions) == "table" and p.decisions or {}) },
      { "pending", "decisions" })
  end
  return json.object(rec, M.KEYS)
end

-- A job file that is a symbolic link (records are opened without
-- following links: whoever made the link would choose what is read as
-- that job; a write replaces the link itself, after a read refused it).
local function refuse_link(dir, id)
  io_error("refusing the job file " .. dir .. "/" .. id .. ".json",
    "it is a symbolic link, and links in the jobs directory are never followed; " ..
    "remove it if you did not make it")
end

--- The record of id, or nil (invalid id, no such record, or a record
--- that is not a job). Any other failure to read it (the jobs directory is
--- not a directory, a permission problem, a refused symlink) raises the
--- "io" error: the job may well exist, so it is never reported missing.
local function read(id)
  if not M.valid(id) then return nil end
  local dir = M.dir()
  local text, msg, code = core.jobs.read(dir, id)
  if not text then
    if code == "ENOENT" then return nil end
    if code == "ELOOP" then refuse_link(dir, id) end
    -- (a FIFO or a device planted under a job's name: never waited on)
    if code ~= "EINVAL" then io_error("cannot read job " .. id, msg, code) end
  end
  local rec = text and decode(text, id)
  if not rec then
    io.stderr:write("agent-dispatch: job ", id, ": unreadable record skipped (", dir, "/", id,
      ".json is not a job record; `agent-dispatch gc` removes it once it is older than the ",
      "jobs it removes, or delete it)\n")
  end
  return rec
end

--- The record of job id, as every reader sees it: without the private
--- state of a handed-off fan-out (M.fanout_state) and the job's task
--- token (M.task_token).
function M.get(id)
  local rec = read(id)
  if rec then rec.fanout, rec.task_token, rec.result_read = nil, nil, nil end
  return rec
end

--- The record of job id as M.get gives it, and the bearer token of its
--- 2026 task (ad.protocol.mcp_tasks_ext) or nil.
function M.get_with_token(id)
  local rec = read(id)
  if not rec then return nil end
  local token = rec.task_token
  rec.fanout, rec.task_token, rec.result_read = nil, nil, nil
  return rec, token
end

--- The private state of a running handed-off fan-out (M.update_fanout),
--- or nil.
function M.fanout_state(id)
  local rec = read(id)
  return rec and not M.TERMINAL[rec.status] and rec.fanout or nil
end

local function encode(rec)
  local out = json.object(util.copy(rec), M.KEYS)
  if out.result then out.result = require("ad.domain.runner").result(util.copy(out.result)) end
  if out.progress then out.progress = json.array(out.progress) end
  return json.encode(out)
end

local function write(rec)
  local ok, msg, code = core.jobs.write(M.dir(), rec.id, encode(rec))
  if not ok then io_error("cannot write job " .. rec.id, msg, code) end
end

-- Updates the index line of rec; false when the index could not be
-- updated (it then no longer covers the directory and is not stamped).
local function reindex(rec)
  local ok, _, code = core.jobs.index_set(M.dir(), rec.id, rec.status)
  if ok or code == "EINVAL" then return ok == true end
  -- Missing entry or malformed index: add the entry, or rebuild it whole.
  if code == "ENOENT" then
    return core.jobs.index_add(M.dir(), rec.id, rec.created_at or core.task.time(), rec.status) == true
  end
  return M.rebuild_index() ~= nil
end

-- Under the lock, before a change: brings an index that does not cover
-- the directory up to date, and withdraws its stamp until the change is
-- complete (record and index line), so that a writer killed between the
-- two leaves an index the next reader rebuilds from the records. Returns
-- whether the index will still cover the directory after the caller's
-- change (then the caller stamps it).
local function covered(dir)
  local fresh = core.jobs.index_fresh(dir)
  if fresh == false then
    local _, written = M.reconcile()
    fresh = written
  end
  if fresh ~= true then return false end
  return core.jobs.index_unstamp(dir) == true
end

--- Runs fn under the jobs lock. After the bounded wait the change fails
--- (an I/O error naming the lock): writing without the lock could lose
--- another process's change while both report success.
local function locked(fn)
  local dir = M.ensure_dir()
  local path, wait = dir .. "/.jobs.lock", config.lock_wait()
  local lock, err, code = core.fs.lock(path, wait)
  if not lock then
    local e = errors.new("io", config.lock_message({ path = path, wait = wait,
      detail = tostring(err), code = code }))
    e.code = code
    error(e, 0)
  end
  local ok, a, b = pcall(fn)
  lock:unlock()
  if not ok then error(a, 0) end
  return a, b
end

--- Applies fn(rec) to the fresh record of id under the lock; fn returns
--- the new record (written) or nil (refused). Returns the result of fn.
local function mutate(id, fn)
  if not M.valid(id) then return nil end
  return locked(function()
    local rec = read(id)
    if not rec then return nil end
    local before = rec.status
    local new, extra = fn(rec)
    if new then
      local dir = M.dir()
      local cover = covered(dir)
      write(new)
      if new.status ~= before then cover = reindex(new) and cover end
      if cover then core.jobs.index_stamp(dir) end
      new.task_token = nil -- written, never handed out (M.task_token)
    end
    return new, extra
  end)
end

local function new_record(fields, status)
  local now = core.task.time()
  return json.object({ id = core.text.hex32(), agent = fields.agent, task = fields.task,
    context = util.nonempty(fields.context), caller = util.nonempty(fields.caller),
    goal = util.nonempty(fields.goal), status = status, created_at = now,
    request = fields.request }, M.KEYS)
end

-- Writes a new record and adds it to the index, under the lock.
local function publish(rec)
  locked(function()
    local dir = M.dir()
    local cover = covered(dir)
    write(rec)
    -- A record the index lacks (the append failed) stays visible: the
    -- index is not stamped, so the next listing reconciles it.
    if core.jobs.index_add(dir, rec.id, rec.created_at, rec.status) and cover then
      core.jobs.index_stamp(dir)
    end
  end)
  return rec
end

--- {pid, start} of this process (start: clock ticks since boot, as in
--- /proc/<pid>/stat), the owner recorded in the jobs it creates.
local me
function M.server_identity()
  if not me then
    local pid = core.sys.getpid()
    local _, start = core.jobs.proc_identity(pid)
    me = json.object({ pid = pid, start = start }, { "pid", "start" })
  end
  return me
end

--- The fields of a record's process, in order.
M.PROCESS_KEYS = { "pid", "pgid", "start", "server_pid", "server_start", "mark" }

--- The identity of child pid as a record names it (process), run by this
--- process; mark: the entry of the child's environment that is its own
--- (its trace context), or nil. nil when pid is gone.
function M.process_identity(pid, mark)
  local me = M.server_identity()
  local pgid, start = core.jobs.proc_identity(pid)
  return pgid and json.object({ pid = pid, pgid = pgid, start = start,
    server_pid = me.pid, server_start = me.start, mark = mark }, M.PROCESS_KEYS) or nil
end

--- True when the server that owns rec is verifiably gone (a recycled pid
--- has another start time); nil when the record names no owner.
function M.owner_gone(rec)
  local s = type(rec.server) == "table" and rec.server
  if not (s and s.pid and s.start) then
    local p = type(rec.process) == "table" and rec.process
    if not (p and p.server_pid and p.server_start) then return nil end
    s = { pid = p.server_pid, start = p.server_start }
  end
  local _, start = core.jobs.proc_identity(s.pid)
  return start ~= s.start
end

function M.create(fields)
  local rec = new_record(fields, "pending")
  local me = M.server_identity()
  rec.server = json.object({ pid = me.pid, start = me.start }, { "pid", "start" })
  return publish(rec)
end

--- A finished record holding result (result references, F35).
function M.create_completed(fields, result)
  local rec = new_record(fields, result.success and "done" or "failed")
  rec.started_at, rec.completed_at = rec.created_at, rec.created_at
  rec.result = result
  if not result.success then rec.error = result.error end
  return publish(rec)
end

--- Names identity ({pid, start}) as the process that runs a job not
--- finished yet: its detached job runner.
function M.set_owner(id, identity)
  return mutate(id, function(rec)
    if M.TERMINAL[rec.status] then return nil end
    rec.server = json.object({ pid = identity.pid, start = identity.start }, { "pid", "start" })
    return rec
  end)
end

--- pending -> running (refused for any other status), recording the
--- child's identity when given.
function M.mark_running(id, process)
  return mutate(id, function(rec)
    if rec.status ~= "pending" then return nil end
    rec.status = "running"
    rec.started_at = core.task.time()
    rec.process = process
    return rec
  end)
end

--- Records the child of a job already running in this process (a second
--- spawn of the same dispatch, e.g. after the CLI refused --session-id).
function M.set_process(id, process)
  return mutate(id, function(rec)
    if rec.status ~= "running" then return nil end
    rec.process = process
    return rec
  end)
end

function M.update_progress(id, lines)
  return mutate(id, function(rec)
    if M.TERMINAL[rec.status] then return nil end
    rec.progress = json.array(util.copy(lines))
    rec.progress_updated_at = core.task.time()
    return rec
  end)
end

local ENDED_UNANSWERED = "The job ended before the request was answered."

-- Moves the requests still pending on record r to its decisions, denied:
-- once the job has ended nobody can answer them (by and message say why;
-- default: the cancel).
local function deny_pending(r, by, message)
  local p = r.permissions
  if type(p) ~= "table" or type(p.pending) ~= "table" or not p.pending[1] then return end
  local decisions = type(p.decisions) == "table" and p.decisions or json.array({})
  local now = core.task.time()
  for _, q in ipairs(p.pending) do
    if type(q) == "table" then
      decisions[#decisions + 1] = json.object({ request_id = q.request_id, tool = q.tool,
        decision = "deny", by = by or "cancel", at = now,
        message = message or "The dispatch was cancelled." },
        M.DECISION_KEYS)
    end
  end
  p.pending, p.decisions = json.array({}), decisions
end

function M.finish(id, result)
  return mutate(id, function(rec)
    if M.TERMINAL[rec.status] then return nil end
    rec.status = result.success and "done" or "failed"
    rec.completed_at = core.task.time()
    rec.result = result
    rec.error = (not result.success) and result.error or nil
    rec.process, rec.fanout, rec.result_read = nil, nil, nil
    deny_pending(rec, "relay", ENDED_UNANSWERED)
    return rec
  end)
end

--- Applies fn(rec) to the record of id while it is pending (a job that
--- has not started); returns the new record, or nil when it is not
--- pending (any more) or does not exist.
function M.mutate_pending(id, fn)
  return mutate(id, function(rec)
    if rec.status ~= "pending" then return nil end
    return fn(rec)
  end)
end

function M.fail(id, message)
  return mutate(id, function(rec)
    if M.TERMINAL[rec.status] then return nil end
    rec.status = "failed"
    rec.completed_at = core.task.time()
    rec.error = message
    rec.process, rec.fanout, rec.result_read = nil, nil, nil
    deny_pending(rec, "relay", ENDED_UNANSWERED)
    return rec
  end)
end

--- The private state of a running handed-off fan-out (ad.domain.fanout:
--- its items, aggregator, trace and the results of the items that ended),
--- from which the keeper finishes it when its server has gone: fn(state)
--- returns the new state. Refused once the job has ended (which drops
--- it). Never shown (M.get leaves it out).
function M.update_fanout(id, fn)
  return mutate(id, function(rec)
    if M.TERMINAL[rec.status] then return nil end
    rec.fanout = fn(rec.fanout)
    return rec
  end)
end

--- Keeps the result line a server has read of its handed-off call's
--- child until the job ends (the keeper, which reads the child on after
--- that server, can no longer read it): a server killed before it records
--- the job's end leaves the answer to the keeper (M.result_read). Refused
--- once the job has ended (which drops it). Never shown (M.get leaves it
--- out).
function M.keep_read(id, line)
  return mutate(id, function(rec)
    if M.TERMINAL[rec.status] then return nil end
    rec.result_read = line
    return rec
  end)
end

--- The line M.keep_read kept for running job id, or nil.
function M.result_read(id)
  local rec = read(id)
  return rec and not M.TERMINAL[rec.status] and type(rec.result_read) == "string" and
    rec.result_read or nil
end

--- The bearer token of job id's 2026 task: 128 random bits, made and
--- stored in the record on the first call, never shown (M.get leaves it
--- out). nil when there is no such job.
function M.task_token(id)
  local _, token = mutate(id, function(r)
    if type(r.task_token) == "string" then return nil, r.task_token end
    local t = core.text.token()
    r.task_token = t
    return r, t
  end)
  return token
end

--- Last resort when a job's end cannot be written (a full disk): marks it
--- failed with message, dropping its progress tail and any result, and
--- overwrites the record in place when even that small atomic write
--- fails (the record then needs no new blocks). Returns the record, or nil
--- and the reason nothing could be recorded.
function M.fail_unstored(id, message)
  local ok, rec = pcall(M.fail, id, message)
  if ok then return rec end
  local why = type(rec) == "table" and rec.message or tostring(rec)
  local done, res = pcall(locked, function()
    local r, token = M.get_with_token(id)
    if not r or M.TERMINAL[r.status] then return r end
    r.status, r.completed_at, r.error = "failed", core.task.time(), message
    r.process, r.result, r.progress, r.progress_updated_at, r.fanout = nil, nil, nil, nil, nil
    r.task_token = token -- the task still answers with its end
    core.jobs.index_unstamp(M.dir()) -- (rebuilt by the next reader: see covered)
    local wrote, msg = core.jobs.write_inplace(M.dir(), id, encode(r))
    r.task_token = nil
    if not wrote then return nil, msg end
    reindex(r)
    return r
  end)
  if done and res then return res end
  return nil, why
end

--- F32: returns record, outcome ("not_found", "already_terminal",
--- "cancelled", "running", "cancelled_running").
--- The fields of a permission decision on a record, in order (the relay's,
--- ad.domain.relay, and the cancel's below).
M.DECISION_KEYS = { "request_id", "tool", "decision", "by", "at", "rule", "message",
  "updated_input", "edited" }

-- A permission request still waiting when its job is cancelled is
-- answered by the cancel: a denial on the record, not a question left
-- pending that nobody can answer any more.
function M.cancel(id, force, why)
  local outcome = "not_found"
  local rec = mutate(id, function(r)
    if M.TERMINAL[r.status] then outcome = "already_terminal"; return nil end
    if r.status == "pending" then
      r.status, r.completed_at = "cancelled", core.task.time()
      r.error = "Cancelled before execution"
      outcome = "cancelled"
      return r
    end
    if not force then outcome = "running"; return nil end
    r.status, r.completed_at = "cancelled", core.task.time()
    r.error = why or "Cancelled while running; the subprocess was killed"
    r.process, r.fanout, r.result_read = nil, nil, nil
    deny_pending(r)
    outcome = "cancelled_running"
    return r
  end)
  if not rec and outcome ~= "not_found" then rec = M.get(id) end
  return rec, outcome
end

-- The index of an existing jobs directory, brought up to date with the
-- directory when they disagree. Returns nil when there is no directory
-- yet; true when the index covers it (read it); else the entries, oldest
-- first, of a reconciliation whose index could not be written (a full
-- disk): the caller uses them as they are.
local function current_index(dir)
  local fresh, msg, code = core.jobs.index_fresh(dir)
  if fresh == nil then
    if code == "ENOENT" then return nil end
    io_error("cannot read the jobs directory", msg)
  end
  if fresh then return true end
  local entries, written = locked(function()
    if core.jobs.index_fresh(dir) then return nil, true end
    return M.reconcile()
  end)
  return written or entries
end

--- M.get, with a pending or running job whose owner and child are both
--- verifiably gone settled first (settle_orphan): a reader sees the job
--- as it is, not as a killed job runner left it.
function M.get_current(id)
  local rec = M.get(id)
  if rec and not M.TERMINAL[rec.status] and M.settle_orphan(rec) then
    rec = M.get(id) or rec
  end
  return rec
end

--- Jobs newest first: at most limit, optionally of one status. Reads the
--- index backwards and only the records it returns; a listed job that is
--- not final is settled first when its processes are gone (get_current),
--- and so, before a listing of a final status, is every job the index
--- has as pending or running (a few records: those of live jobs).
--- as_recorded: the records as they are, nothing settled (`doctor`
--- reports such jobs itself).
function M.list(status, limit, as_recorded)
  local dir = M.dir()
  local index = current_index(dir)
  if index == nil then return {} end
  if status and M.TERMINAL[status] and index == true and not as_recorded then
    for _, st in ipairs({ "running", "pending" }) do
      for _, e in ipairs(core.jobs.index_scan(dir, st) or {}) do
        local rec = M.get_listed(e.id)
        if rec and not M.TERMINAL[rec.status] then M.settle_orphan(rec) end
      end
    end
    index = current_index(dir)
  end
  local entries
  if index == true then
    local msg
    entries, msg = core.jobs.index_scan(dir, status, limit)
    if not entries then io_error("cannot read the job index", msg) end
  else
    entries = {}
    for i = #index, 1, -1 do
      if #entries >= (limit or math.huge) then break end
      if not status or index[i].status == status then entries[#entries + 1] = index[i] end
    end
  end
  local out = {}
  for _, e in ipairs(entries) do
    local rec = M.get_listed(e.id)
    if rec and not as_recorded and not M.TERMINAL[rec.status] and M.settle_orphan(rec) then
      rec = M.get_listed(e.id)
    end
    if rec and (not status or rec.status == status) then out[#out + 1] = rec end
  end
  return out
end

--- M.get for one entry of a listing: a record that cannot be read is
--- reported on stderr and skipped, so one bad file does not hide the rest.
function M.get_listed(id)
  local ok, rec = pcall(M.get, id)
  if ok then return rec end
  io.stderr:write("agent-dispatch: ", tostring(type(rec) == "table" and rec.message or rec), "\n")
  return nil
end

local function entry_of(id, rec)
  return { id = id, created_at = tonumber(rec.created_at) or 0,
           status = type(rec.status) == "string" and rec.status or "failed" }
end

local function by_creation(a, b)
  if a.created_at ~= b.created_at then return a.created_at < b.created_at end
  return a.id < b.id
end

-- Writes entries as the index and stamps it; true when both worked.
local function write_index(dir, entries)
  local ok, msg = core.jobs.index_write(dir, entries)
  if not ok then
    io.stderr:write("agent-dispatch: cannot write the job index: ", tostring(msg), "\n")
    return false
  end
  return core.jobs.index_stamp(dir) == true
end

-- The ids of the record files in dir (a set).
local function record_ids(dir)
  local names, msg = core.fs.listdir(dir)
  if not names then io_error("cannot read the jobs directory", msg) end
  local ids = {}
  for _, name in ipairs(names) do
    local id = name:match("^(%x+)%.json$")
    if id and M.valid(id) then ids[id] = true end
  end
  return ids
end

--- Makes the index agree with the record files (caller holds the lock):
--- entries whose file is gone are dropped, files it lacks (written by
--- another program, a crash between a record write and its index update,
--- a restore) are read and added, and so are the records of entries whose
--- status is not final: a writer killed between a record's change and its
--- index line left the status before the change, and every change starts
--- from a status that is not final. Only those are read. Returns the
--- entries, oldest first, and whether the index was written.
function M.reconcile()
  local dir = M.dir()
  local present = record_ids(dir)
  local old, msg, code = core.jobs.index_scan(dir, nil)
  if not old then
    if code ~= "ENOENT" and code ~= "EBADMSG" then io_error("cannot read the job index", msg) end
    old = {}
  end
  local entries, seen, added = {}, {}, false
  for i = #old, 1, -1 do
    local e = old[i]
    if present[e.id] and not seen[e.id] then
      seen[e.id] = true
      if not M.TERMINAL[e.status] then
        local rec = M.get_listed(e.id)
        if rec then e = entry_of(e.id, rec) end
      end
      entries[#entries + 1] = e
    end
  end
  for id in pairs(present) do
    if not seen[id] then
      local rec = M.get_listed(id)
      if rec then entries[#entries + 1] = entry_of(id, rec); added = true end
    end
  end
  if added then table.sort(entries, by_creation) end
  return entries, write_index(dir, entries)
end

--- Rebuilds the index from the record files (caller holds the lock).
--- Returns the number of entries, or nil when the index could not be
--- written.
function M.rebuild_index()
  local dir = M.dir()
  local names = core.fs.listdir(dir) or {}
  local entries = {}
  for _, name in ipairs(names) do
    local id = name:match("^(%x+)%.json$")
    if id and M.valid(id) then
      local rec = M.get_listed(id)
      if rec then entries[#entries + 1] = entry_of(id, rec) end
    end
  end
  table.sort(entries, function(a, b) return a.created_at < b.created_at end)
  if not write_index(dir, entries) then return nil end
  return #entries
end

--- F34: deletes terminal jobs completed (or created) before now - max_age.
--- The index narrows the candidates: completed_at >= created_at, so a job
--- created after the cutoff cannot be old enough.
function M.gc(max_age)
  local purged = M.purge(max_age)
  -- The inboxes of jobs whose owner was killed (ad.storage.inbox): their
  -- own store, swept after this one's lock is given back.
  pcall(function() require("ad.storage.inbox").sweep() end)
  -- The session turn marks (ad.storage.session_marks) of the same age.
  pcall(function() require("ad.storage.session_marks").sweep(max_age) end)
  return purged
end

--- gc's purge of the records and the index, under the lock.
function M.purge(max_age)
  local cutoff = core.task.time() - max_age
  return locked(function()
    local dir = M.dir()
    local all
    if core.jobs.index_fresh(dir) then
      local msg
      all, msg = core.jobs.index_scan(dir, nil)
      if not all then io_error("cannot read the job index", msg) end
    else
      all = M.reconcile() -- oldest first; the loop below does not care
    end
    -- (removals the index does not follow yet: see covered)
    core.jobs.index_unstamp(dir)
    local keep, purged = {}, 0
    for i = #all, 1, -1 do
      local e = all[i]
      local gone = false
      if M.TERMINAL[e.status] and e.created_at < cutoff then
        local readable, rec = pcall(M.get, e.id)
        local t = readable and rec and (tonumber(rec.completed_at) or tonumber(rec.created_at))
        if t and M.TERMINAL[rec.status] and t < cutoff then
          if core.jobs.remove(dir, e.id) then purged = purged + 1; gone = true end
        elseif readable and not rec then
          gone = true -- its file is gone
        end
      end
      if not gone then keep[#keep + 1] = e end
    end
    table.sort(keep, by_creation)
    write_index(dir, keep)
    -- Files no reader takes for a job (damaged, or not a job record):
    -- removed as the jobs are, once their last change is older than the
    -- cutoff.
    local listed = {}
    for _, e in ipairs(keep) do listed[e.id] = true end
    for id in pairs(record_ids(dir)) do
      if not listed[id] then
        local kind, mtime = core.fs.stat(dir .. "/" .. id .. ".json")
        local text = kind == "file" and mtime < cutoff and core.jobs.read(dir, id)
        -- ("other": a FIFO or a device node, which no reader opens)
        if ((text and not decode(text, id)) or (kind == "other" and mtime < cutoff)) and
            core.jobs.remove(dir, id) then
          purged = purged + 1
        end
      end
    end
    return purged
  end)
end

--- A watch of job id's record, armed now (core.jobs.watch): its wait ends
--- when the record changes or, given pid and start, when that process
--- exits. nil when the store cannot be watched (the caller looks again
--- later).
function M.watch(id, pid, start)
  local ok, w = pcall(core.jobs.watch, M.dir(), id .. ".json", pid, start)
  return ok and w or nil
end

--- The process whose exit could leave rec unfinished for good: its owner
--- (a job runner, or the server that runs it) while that is alive, else
--- its recorded child. pid and start time (for M.watch), or nil.
function M.runs_it(rec)
  local s = type(rec.server) == "table" and rec.server
  if s and s.pid and s.start then
    local _, start = core.jobs.proc_identity(s.pid)
    if start == s.start then return s.pid, s.start end
  end
  if M.process_alive(rec) then return rec.process.pid, rec.process.start end
end

--- A pending or running job whose owner (its server or detached job
--- runner) and recorded child are both verifiably gone ends now as failed.
--- True when rec was such a job and is now failed.
function M.settle_orphan(rec)
  if not (M.owner_gone(rec) and not M.process_alive(rec)) then return false end
  -- The child died with its owner (its parent-death signal); what it
  -- started in its group did not.
  local p = rec.process
  local pgid = type(p) == "table" and math.tointeger(p.pgid)
  local start = pgid and math.tointeger(p.start)
  if start and type(p.mark) == "string" then core.jobs.kill_remnants(pgid, start, p.mark) end
  return M.fail(rec.id, "Server stopped while the job was " .. tostring(rec.status) .. " (the " ..
    "agent-dispatch process that ran it exited without finishing it); " ..
    "re-dispatch if needed.") ~= nil
end

--- F33: fails running jobs abandoned for over an hour (unless their file
--- was written recently: a live worker rewrites it) and pending jobs
--- older than a day. Returns how many were recovered.
function M.recover_stale()
  local now = core.task.time()
  local dir = M.dir()
  -- Startup reconciles the index with the directory whatever the stamp
  -- says (a change within one coarse clock tick of a write by this store
  -- could share its mtime): records it lacks would never be recovered.
  if not core.fs.stat(dir) then return 0 end
  local entries = locked(M.reconcile)
  local n = 0
  for _, e in ipairs(entries) do
    -- The index picks the candidates, the record decides: a record is
    -- written before its index line, so a process killed in between (a
    -- runner's start: pending in the index, running in the file) leaves
    -- an index one change behind, never ahead.
    local rec = (e.status == "running" or e.status == "pending") and M.get_listed(e.id)
    local status = rec and rec.status
    if status == "running" or status == "pending" then
      local since = tonumber(status == "running" and (rec.started_at or rec.created_at)
                             or rec.created_at) or now
      local age = now - since
      local limit = status == "running" and M.STALE_RUNNING or M.STALE_PENDING
      local _, mtime = core.fs.stat(dir .. "/" .. e.id .. ".json")
      local fresh = status == "running" and mtime and mtime > now - M.STALE_RUNNING
      -- A recorded child that is verifiably still the same process (pid,
      -- group and start time) keeps the job alive; a recycled pid does not.
      -- Its server died (killed, crashed) and its child with it: settled
      -- now, not an hour later.
      if M.owner_gone(rec) and not M.process_alive(rec) then
        if M.settle_orphan(rec) then n = n + 1 end
      elseif age > limit and not fresh and not M.process_alive(rec) then
        if M.fail(e.id, string.format("Abandoned in '%s' for %ds - likely a " ..
            "server restart; re-dispatch if needed", status, math.floor(age))) then
          n = n + 1
        end
      end
    end
  end
  return n
end

--- The child of a running record, when it is still that very process.
function M.process_alive(rec)
  local p = rec and rec.process
  if type(p) ~= "table" or not p.pid or not p.pgid or not p.start then return false end
  local pgid, start = core.jobs.proc_identity(p.pid)
  return pgid == p.pgid and start == p.start
end

--- Kills a recorded child's group after verifying its identity: SIGTERM
--- now, SIGKILL after grace seconds if it is still the same process.
function M.kill_recorded(rec, grace)
  local p = rec.process
  if not M.process_alive(rec) then return false end
  if not core.jobs.kill_verified(p.pid, p.pgid, p.start, "TERM") then return false end
  local deadline = core.task.now() + (grace or 2)
  while core.task.now() < deadline and M.process_alive(rec) do
    if core.task.in_task() then core.task.sleep(0.05) else break end
  end
  if M.process_alive(rec) then core.jobs.kill_verified(p.pid, p.pgid, p.start, "KILL") end
  return true
end

--- The ids of the stored jobs that start with prefix (lowercase hex), in
--- order; reads the directory listing, not the records. No jobs
--- directory: none.
function M.ids_with_prefix(prefix)
  local dir = M.dir()
  if not core.fs.stat(dir) then return {} end
  local out = {}
  for id in pairs(record_ids(dir)) do
    if id:sub(1, #prefix) == prefix then out[#out + 1] = id end
  end
  table.sort(out)
  return out
end

--- Messages applied to a running job (ad.storage.inbox: steer, interrupt,
--- approve) are recorded on it, the latest MAX_MESSAGES: {kind, by, at,
--- text?, ...}.
M.MAX_MESSAGES = 50

--- Adds one applied message to job id's record (even a finished one: a
--- message applied just before the end stays on record). Returns the
--- record or nil.
function M.record_message(id, entry)
  return mutate(id, function(r)
    local list = type(r.messages) == "table" and r.messages or json.array()
    list[#list + 1] = entry
    while #list > M.MAX_MESSAGES do table.remove(list, 1) end
    r.messages = list
    return r
  end)
end

--- Notes on job id's record the session its agent ran in: a cancelled
--- job whose child was stopped with the interrupt (live transport) keeps
--- it, and dispatch_session(session_id=...) resumes it.
function M.note_session(id, session_id)
  return mutate(id, function(r)
    r.session_id = session_id
    return r
  end)
end

--- The permission relay's part of a job that has not ended (ad.domain.relay):
--- fn(p) changes p = {pending = [requests], decisions = [decisions]} in
--- place. Returns the record, or nil when the job is gone or has ended.
function M.update_permissions(id, fn)
  return mutate(id, function(rec)
    if M.TERMINAL[rec.status] then return nil end
    local old = type(rec.permissions) == "table" and rec.permissions or {}
    local p = json.object({ pending = json.array(util.copy(old.pending or {})),
      decisions = json.array(util.copy(old.decisions or {})) }, { "pending", "decisions" })
    fn(p)
    rec.permissions = p
    return rec
  end)
end

return M
