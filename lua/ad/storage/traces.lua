--- The trace store: spans of every tree in one JSON Lines file per day
--- (UTC), <dir>/spans-YYYYMMDD.jsonl, shared by every process (servers,
--- nested servers, detached job runners, the CLI). Each process keeps one
--- O_APPEND descriptor on the day's file open (core.fs.appender), opened
--- again when the day changes, when gc removed the file or when it is
--- full (MAX_PART: the day goes on in spans-YYYYMMDD.N.jsonl): a dispatch
--- creates no file. A span is a line, appended with one write(), so
--- concurrent writers never interleave or lose a line; a line is bounded
--- (MAX_LINE) so that write stays one atomic append. A span may be written
--- twice (at its start, once its child has run for trace.START_DELAY, and
--- at its end); readers keep the last record per span_id. Readers look for a trace's id as plain text and decode only the
--- lines that hold it; retention removes whole day files.
---
--- The tree's spend ledger is <dir>/<trace_id>.budget: one line of JSON
--- kept in the file its holders flock, read and rewritten in place under
--- that lock (no rename, no fsync: it matters while the tree runs, and two
--- changes per dispatch must stay cheap).
---
--- The directory is owner-only (0700, files 0600) and refused like the jobs
--- directory (ad.storage.paths.private_dir) when someone else owns it or
--- may write to it or it is a symbolic link; symlinks are never followed
--- when a file is appended to, read or replaced.
local core = require "ad.core"
local json = require "ad.infra.json"
local errors = require "ad.infra.errors"
local paths = require "ad.storage.paths"

local M = {}

--- The fields of a span record, in the order they are written.
M.KEYS = { "trace_id", "span_id", "parent_id", "kind", "agent", "task", "caller",
  "goal", "start", "end", "duration_ms", "status", "error_type", "session_id",
  "cost_usd", "num_turns", "denied_tools", "cached", "depth", "pid", "job_id" }

--- Bytes of one line at most: one write of a page or less is atomic on
--- every local file system; longer texts (task, caller, goal) are cut.
--- (core.trace, which writes the lines, has the same bound.)
M.MAX_LINE = 4096

--- Bytes of a trace file read at most (a tree of thousands of spans).
M.MAX_FILE = 64 * 1024 * 1024

local io_error = errors.raise_io

--- $AGENT_DISPATCH_TRACES_DIR, else traces/ next to the config file
--- (spans are shown as what happened and the ledger decides what may run:
--- a directory someone else owns or may write, or a link to one, could
--- hold forged ones).
function M.dir()
  return paths.state_dir("traces", "AGENT_DISPATCH_TRACES_DIR")
end

-- The directory this process created and checked: the environment and
-- the config path do not change while it runs, so the writes of every
-- dispatch after the first skip the path work (each file is still opened
-- without following links and refused when someone else owns it).
local made
local function ensure_dir()
  if made then return made end
  local dir = M.dir()
  local ok, err = core.fs.mkdirs(dir, 448) -- 0700
  if not ok then io_error("cannot create the traces directory", err) end
  made = paths.private_dir(dir, "traces", "AGENT_DISPATCH_TRACES_DIR") -- as created (mkdirs only ever removes bits)
  return made
end

function M.valid(id)
  return type(id) == "string" and #id == 32 and id:find("^[0-9a-f]+$") ~= nil
end

--- A span as the text of one line (its newline is added by the write) of
--- less than MAX_LINE bytes: its KEYS in order, formatted in one C call
--- (core.trace.line: no record table, no scan of the span's other fields,
--- such as the reserved/adopted a caller keeps on it for itself; invalid
--- UTF-8 repaired; a field the span lacks written as a new span has it,
--- depth the one given). Only the free texts can be long: a longer line
--- has its task, caller and goal cut to 100, 40, then 0 code points until
--- it fits. With status the line is the span's end, now, with what result
--- r says of it (cost, session, turns, denied tools, cached).
function M.line(span, depth, status, r)
  return core.trace.line(span, depth, status, r)
end

-- ---- the day files ---------------------------------------------------------

--- Bytes a day file takes before spans go on in the day's next part
--- (below MAX_FILE, so that any part can be read whole).
M.MAX_PART = 32 * 1024 * 1024

--- The name of the day file of epoch seconds t (UTC), part n (0: the
--- first; spans-YYYYMMDD.jsonl, then spans-YYYYMMDD.N.jsonl).
function M.day_file(t, n)
  local day = os.date("!%Y%m%d", math.floor(t))
  if n and n > 0 then return "spans-" .. day .. "." .. n .. ".jsonl" end
  return "spans-" .. day .. ".jsonl"
end

-- The day and part of a day file's name, or nil.
local function day_part(name)
  local day = name:match("^spans%-(%d%d%d%d%d%d%d%d)%.jsonl$")
  if day then return day, 0 end
  local d, n = name:match("^spans%-(%d%d%d%d%d%d%d%d)%.(%d+)%.jsonl$")
  if d then return d, tonumber(n) end
end

-- The descriptor this process appends through: part `part` of the day
-- file of `day` (days since the epoch, UTC), opened once and kept. A new
-- day opens the next file, a full part the next part; a file removed
-- meanwhile (gc) is noticed by the write itself and opened anew by name.
local out = { day = nil, part = 0, file = nil }

local function reopen(dir, day, part)
  if out.file then out.file:close() end
  out.file, out.day = nil, nil
  local name = dir .. "/" .. M.day_file(day * 86400, part)
  local f, msg = core.fs.appender(name, 384) -- 0600
  if not f then io_error("cannot write the trace file " .. name, msg) end
  out.file, out.day, out.part = f, day, part
  return f
end

--- Appends a span record (M.line) to the day file it is written in.
--- Raises the "io" error when it cannot be written.
function M.append(span, depth, status, r)
  local dir = ensure_dir()
  local day = math.floor(core.task.time() / 86400)
  local f
  if out.day == day and out.file then f = out.file else f = reopen(dir, day, 0) end
  -- (formatted and written in C, no string of it; a failed write returns
  -- the line, written again as it was)
  local ok, msg, code, line = core.trace.append(f, M.MAX_PART, span, depth, status, r)
  -- Removed (gc): the same name again. Full: the next parts (other
  -- processes may have filled some already), a bounded number of them.
  for _ = 1, 64 do
    if ok or (code ~= "ENOENT" and code ~= "EFBIG") then break end
    f = reopen(dir, day, code == "EFBIG" and out.part + 1 or out.part)
    ok, msg, code = f:write(line, "\n", M.MAX_PART)
  end
  if not ok then io_error("cannot write trace " .. tostring(span.trace_id), msg) end
end

-- {name, key, path} of every day file, newest first (by day, then part).
local function days()
  local ok, dir = pcall(M.dir)
  if not ok then error(dir, 0) end
  local list = {}
  for _, name in ipairs(core.fs.listdir(dir) or {}) do
    local day, part = day_part(name)
    if day then
      list[#list + 1] = { name = name, key = day .. string.format("%09d", part),
        path = dir .. "/" .. name }
    end
  end
  table.sort(list, function(a, b) return a.key > b.key end)
  return list
end

-- Why a state file could not be read, in words (core.fs.read_file's code).
local WHY = { EINVAL = "it is not a regular file", ELOOP = "it is a symbolic link",
  EFBIG = "it is larger than " .. M.MAX_FILE .. " bytes" }
local warned = {}

-- The text of a day file; nil when it went away meanwhile, or when it
-- cannot be read (a FIFO, a link, a huge file planted there: said once,
-- and every other trace is still shown).
local function text_of(f)
  local text, msg, code = core.fs.read_file(f.path, M.MAX_FILE, true)
  if not text then
    if code ~= "ENOENT" and not warned[f.path] then
      warned[f.path] = true
      io.stderr:write("agent-dispatch: trace file ", f.path, " skipped: ", WHY[code] or msg,
        " (`agent-dispatch gc` removes it by age, or delete it)\n")
    end
    return nil
  end
  return text
end

-- The line of text around position at.
local function line_at(text, at)
  local b = at
  while b > 1 and text:byte(b - 1) ~= 10 do b = b - 1 end
  local e = text:find("\n", at, true) or #text + 1
  return text:sub(b, e - 1), e
end

local function needle(id) return '"trace_id":"' .. id .. '"' end

-- A number no span field holds (times are seconds since 1970, costs
-- dollars): one past it is damage, dropped so that views never compute
-- with infinities or numbers without an integer form.
local NUMBER_BOUND = 1e15

-- rec without the numbers it cannot hold (a damaged or forged line).
local function sane(rec)
  for k, v in pairs(rec) do
    if type(v) == "number" and not (v > -NUMBER_BOUND and v < NUMBER_BOUND) then rec[k] = nil end
  end
  -- A list stays a list when it is empty ([] and {} decode alike).
  if type(rec.denied_tools) == "table" and next(rec.denied_tools) == nil then
    rec.denied_tools = json.array()
  end
  return rec
end

--- The spans of each trace of ids ({trace_id = spans}), one per span_id
--- (its last record), in the order they were first written; a trace not
--- found has no entry. One pass over the day files, oldest first; only the
--- lines holding a wanted trace's id are decoded, and a line that is not a
--- span (a torn write of a full disk) is skipped.
function M.read_many(ids)
  local want, found = {}, {}
  for _, id in ipairs(ids) do
    if M.valid(id) then want[#want + 1] = id end
  end
  if #want == 0 then return found end
  local list = days()
  for i = #list, 1, -1 do
    local text = text_of(list[i])
    for _, id in ipairs(text and want or {}) do
      local pat = needle(id)
      local pos = text:find(pat, 1, true)
      while pos do
        local line, e = line_at(text, pos)
        local rec = json.decode(line)
        if type(rec) == "table" and type(rec.span_id) == "string" and rec.trace_id == id then
          local t = found[id]
          if not t then
            t = { spans = {}, at = {} }
            found[id] = t
          end
          local k = t.at[rec.span_id]
          if not k then
            k = #t.spans + 1
            t.at[rec.span_id] = k
          end
          t.spans[k] = sane(rec)
        end
        pos = text:find(pat, e, true)
      end
    end
  end
  for id, t in pairs(found) do found[id] = t.spans end
  return found
end

--- The spans of a trace (as read_many), or nil when there is no such trace.
function M.read(id)
  return M.read_many({ id })[id]
end

--- The ids of the most recently written traces (newest first), at most
--- limit of them.
local function recent_ids(limit)
  local out_ids, seen = {}, {}
  for _, f in ipairs(days()) do
    local text = text_of(f)
    if text then
      -- The last line of a trace in this file orders it.
      local last, ids = {}, {}
      local n = 0
      for id in text:gmatch('"trace_id":"(%x+)"') do
        n = n + 1
        if not last[id] then ids[#ids + 1] = id end
        last[id] = n
      end
      table.sort(ids, function(a, b) return last[a] > last[b] end)
      for _, id in ipairs(ids) do
        if not seen[id] and M.valid(id) then
          seen[id] = true
          out_ids[#out_ids + 1] = id
          if #out_ids >= limit then return out_ids end
        end
      end
    end
  end
  return out_ids
end

--- The ids of the limit most recent traces, newest first, and their
--- spans as read_many gives them (read to find them: the caller need not
--- read them again). An id seen only in lines no reader can decode (a
--- line cut short by a full disk) is no trace: left out.
function M.recent(limit)
  local ids = recent_ids(limit + 8)
  local spans = M.read_many(ids)
  local out = {}
  for _, id in ipairs(ids) do
    if spans[id] and #spans[id] > 0 then
      out[#out + 1] = id
      if #out >= limit then break end
    end
  end
  return out, spans
end

--- The trace holding the span of job id (newest day files searched
--- first), or nil.
function M.find_job(job_id)
  local pat = '"job_id":"' .. job_id .. '"'
  for _, f in ipairs(days()) do
    local text = text_of(f)
    local pos = text and text:find(pat, 1, true)
    if pos then
      local id = line_at(text, pos):match('"trace_id":"(%x+)"')
      if M.valid(id) then return id end
    end
  end
  return nil
end

--- What retention and gc keep whatever age they are given (seconds since
--- the last write): a tree may still run in files written this recently.
--- Its ledger holds its spend cap (a removed one would start the cap from
--- zero) and is written at each dispatch's start and end, at most
--- MAX_TIMEOUT apart; its day files hold its spans so far.
M.KEEP_RECENT = 86400

--- Removes the day files (and the tree ledgers) not written to for
--- max_age seconds, and never one written in the last M.KEEP_RECENT:
--- retention deletes whole days. Returns how many traces the removed day
--- files held.
function M.prune(max_age)
  local ok, dir = pcall(M.dir)
  if not ok then return 0 end
  local names = core.fs.listdir(dir)
  if not names then return 0 end
  local now, n = core.task.time(), 0
  local cutoff = math.min(now - max_age, now - M.KEEP_RECENT)
  for _, name in ipairs(names) do
    local id, ext = name:match("^(%x+)%.(%a+)$")
    local day = day_part(name)
    if day or (M.valid(id) and ext == "budget") then
      local path = dir .. "/" .. name
      local kind, mtime = core.fs.stat(path)
      -- ("other": a FIFO or a device node planted under a trace's name,
      -- which no tree writes: only the age asked for applies)
      if (kind == "file" and mtime < cutoff) or (kind == "other" and mtime < now - max_age) then
        local text = day and core.fs.read_file(path, M.MAX_FILE, true)
        if core.fs.unlink(path) and text then
          local ids = {}
          for t in text:gmatch('"trace_id":"(%x+)"') do
            if not ids[t] then ids[t] = true; n = n + 1 end
          end
        end
      end
    end
  end
  return n
end

-- ---- the tree's ledger -------------------------------------------------------

-- The ledger of its text (its first line: a shorter rewrite ends with a
-- newline before anything its truncation has not cut yet), or a new one.
local function ledger_of(text)
  local led = text and json.decode(text:match("^[^\n]*"))
  if type(led) ~= "table" then led = {} end
  led.spent = tonumber(led.spent) or 0
  led.reserved = type(led.reserved) == "table" and led.reserved or {}
  led.spenders = type(led.spenders) == "table" and led.spenders or {}
  return led
end

--- Runs fn(ledger) under the tree's lock; when fn returns true the ledger
--- is written back. The ledger is {cap=, spent=, reserved={span_id=usd},
--- spenders={agent=usd}}. Returns what fn returned after that flag.
function M.with_ledger(trace_id, fn)
  local dir = ensure_dir()
  local wait = require("ad.storage.config").lock_wait()
  local lock, err = core.fs.lock(dir .. "/" .. trace_id .. ".budget", wait)
  if not lock then io_error("cannot lock the budget of trace " .. trace_id, err) end
  local ok, changed, a, b = pcall(function()
    local text, rerr = lock:read()
    if not text then io_error("cannot read the budget of trace " .. trace_id, rerr) end
    local led = ledger_of(text)
    local changed, x, y = fn(led)
    if changed then
      local w, msg = lock:write(json.encode(json.object({ cap = led.cap, spent = led.spent,
        reserved = json.object(led.reserved), spenders = json.object(led.spenders) },
        { "cap", "spent", "reserved", "spenders" })) .. "\n")
      if not w then io_error("cannot write the budget of trace " .. trace_id, msg) end
    end
    return changed, x, y
  end)
  lock:unlock()
  if not ok then error(changed, 0) end
  return a, b
end

--- The ledger of a trace as it is (no lock), or nil.
function M.ledger(trace_id)
  if not M.valid(trace_id) then return nil end
  local ok, dir = pcall(M.dir)
  if not ok then return nil end
  local text = core.fs.read_file(dir .. "/" .. trace_id .. ".budget", 1024 * 1024, true)
  if not text then return nil end
  return ledger_of(text)
end

return M
