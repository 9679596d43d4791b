--- Calls handed off to jobs that outlive the server (src/keeper.c): the
--- child of a sync dispatch that may be handed off is started by the
--- server's keeper, a process of its own session (core.proc.spawn with
--- keeper = true; the server reads the child as its own). At the
--- hand-off (ad.domain.async.adopt) `hand` tells the keeper which job its
--- child now is and names the keeper as the job's owner; when the server
--- exits, `main` runs in the keeper (`agent-dispatch __keeper-run ...`,
--- the same process after exec, so the children stay its own): it reads
--- each handed-off child on, writes the job's progress tail and result
--- as the server would have, and exits when they have ended.
local core = require "ad.core"
local json = require "ad.infra.json"
local util = require "ad.infra.util"
local jobs = require "ad.storage.jobs"

local M = {}

local META_KEYS = { "job", "agent", "stream", "response_format", "response_schema",
  "timeout", "budget", "by_tree", "session_id", "span", "reserved", "cache", "item", "host", "directory" }

-- The span of a handed-off call (ad.domain.trace), which the keeper ends:
-- its whole record (the server's depth and pid in it).
local function span_of(run)
  if type(run.span) ~= "table" then return nil end
  return require("ad.domain.trace").full(run.span)
end

-- Ends the span of a job (meta.span) with its result.
local function end_span(meta, r)
  local s = type(meta.span) == "table" and meta.span
  if not s then return end
  if type(s.denied_tools) ~= "table" or #s.denied_tools == 0 then s.denied_tools = json.array() end
  local trace = require "ad.domain.trace"
  pcall(trace.finish, s, trace.status_of(r), r)
end

-- The settings of this process's configuration (the result cache's), or
-- nil when it cannot be read.
local settings

--- What the server's runner does with the result r of a child read here
--- (meta: its meta), in the same order: the tree budget reserved for its
--- span settled with what it cost, its span ended, a clean success cached
--- under the request's key (ad.domain.runner).
function M.settle(meta, r, own)
  own = own or settings
  local runner = require "ad.domain.runner"
  local s = type(meta.span) == "table" and meta.span
  if meta.reserved and s and type(s.trace_id) == "string" and type(s.span_id) == "string" then
    -- (the keeper read the child: it ran)
    runner.settle_tree({ trace_id = s.trace_id }, s, meta.agent, r, true)
  end
  end_span(meta, r)
  if type(meta.cache) == "string" and own then
    pcall(runner.remember, own, meta.cache, meta.agent, r)
  end
end

--- True when req's child should be started by the keeper: a sync call
--- that may be handed off, with jobs_outlive_server on. A remote agent's
--- ssh ends its remote side when its stdin closes: at the hand-off the
--- keeper gets a copy of that stdin (see M.hand).
function M.wanted(req)
  return req.handoff_after ~= nil and req.settings ~= nil and
    req.settings.jobs_outlive_server ~= false
end

--- Whether the processes kept between calls (live sessions, the warm
--- pool) are started by the keeper, so that a handed-off turn on one
--- outlives the server (settings: the server's).
function M.keeps_live(settings)
  return settings ~= nil and settings.jobs_outlive_server ~= false
end

-- The session a child's command line names (--session-id or --resume).
local function session_of(argv)
  for i, a in ipairs(argv or {}) do
    if a == "--session-id" or a == "--resume" then return argv[i + 1] end
  end
end


-- Adds a line to a progress tail (as ad.domain.async does).
local function note(tail, line)
  local async = require "ad.domain.async"
  tail[#tail + 1] = util.cut(line, async.TAIL_CHARS)
  if #tail > async.TAIL_LINES then table.remove(tail, 1) end
end

-- The DispatchResult of what was read (run: payload or lines, info;
-- meta: the job's agent, stream, response_format, response_schema,
-- session_id, timeout, budget, and a remote agent's host and directory),
-- through the after_result and redact hooks as the server's runner would
-- have: a remote run's ssh failure is one (ad.domain.remote.failure).
local function result_of(run, meta, view)
  local claude = require "ad.domain.claude"
  local runner = require "ad.domain.runner"
  run.session_id, run.timeout, run.budget = meta.session_id, meta.timeout, meta.budget
  run.budget_by_tree = meta.by_tree == true
  run.max_output = runner.MAX_OUTPUT
  local req = { agent_name = meta.agent, stream = meta.stream == true,
    response_format = meta.response_format, response_schema = meta.response_schema }
  local r
  if type(meta.host) == "string" then
    req.agent = { host = meta.host, directory = meta.directory }
    r = require("ad.domain.remote").failure(run, req)
  else
    r = claude.interpret(run, req)
  end
  r = r or runner.failure(meta.agent, "cli_error", "The agent ended without a result.")
  local plugins = package.loaded["ad.domain.plugins"]
  if plugins and plugins.active() then r = plugins.after_result(view, r) end
  return r
end

-- Records a job's end and runs the job_done hooks.
local function finish(id, r)
  local ok, rec = pcall(jobs.finish, id, r)
  local plugins = package.loaded["ad.domain.plugins"]
  if ok and rec and plugins then pcall(plugins.job_done, rec) end
end

--- The meta of a kept child (what the keeper's job runner needs to end
--- it as the server would): run is its run ({req, argv, span,
--- transport}), rec its job's record.
function M.meta(run, rec)
  local req = run.req
  local eff = require("ad.domain.request").effective(req)
  -- The keeper counts the timeout from the child's start: a kept live
  -- process had lived run.age seconds when this turn began.
  local timeout = eff.timeout and eff.timeout + (run.age or 0)
  local remote = req.agent ~= nil and req.agent.host ~= nil
  return json.object({ job = rec and rec.id, agent = req.agent_name,
    host = remote and req.agent.host or nil, directory = remote and req.agent.directory or nil,
    -- A live child writes stream-json whatever the caller asked for.
    stream = req.stream == true or run.transport == "live", response_format = req.response_format,
    response_schema = req.response_schema, timeout = timeout, budget = eff.budget,
    by_tree = eff.by_tree or nil, session_id = session_of(run.argv), span = span_of(run),
    reserved = type(run.span) == "table" and run.span.reserved == true or nil,
    -- (an answer that depended on permission decisions is never cached)
    cache = not req.relay and require("ad.domain.runner").cache_key(req) or nil }, META_KEYS)
end
local meta_of = M.meta

--- The hand-off of run (a watched run whose request wanted the keeper)
--- to job rec: the keeper learns which job its child is, the record
--- names the keeper as the job's owner and its child's server. True when
--- the keeper has it (run.kept); false leaves the run the server's.
function M.hand(run, rec)
  local req = run.req
  if not (req and req.keeper and run.pid and not run.finished) then return false end
  local m = meta_of(run, rec)
  local meta = json.encode(m)
  -- A remote agent's ssh: the keeper holds its input open (the far side
  -- ends everything when it closes) until its job runner has the result.
  -- A turn on a kept live process: the keeper gets its slot too (a
  -- one-shot child's is its process's own).
  local kp = core.keeper.handoff(run.pid, meta, req.agent ~= nil and req.agent.host ~= nil,
    run.slot)
  if not kp then return false end
  local _, kstart = core.jobs.proc_identity(kp)
  local pgid, start = core.jobs.proc_identity(run.pid)
  run.kept = true
  if not (kstart and pgid) then return true end -- gone already: the record settles
  pcall(jobs.set_owner, rec.id, { pid = kp, start = kstart })
  -- The session it works on: a later turn of it, in any server, waits for
  -- this one to end (ad.domain.runner: two CLIs never share a transcript).
  if type(m.session_id) == "string" then
    pcall(jobs.note_session, rec.id, m.session_id)
    pcall(require("ad.storage.session_marks").hand, m.session_id, rec.id)
  end
  run.process = json.object({ pid = run.pid, pgid = pgid, start = start, server_pid = kp,
    server_start = kstart, mark = run.mark }, jobs.PROCESS_KEYS)
  pcall(jobs.set_process, rec.id, run.process)
  return true
end

--- A line this server read of kept run (the job's child, handed off):
--- its result line is kept in the job's record at once, for the keeper,
--- which cannot read it again, should this server be killed before it
--- records the job's end.
function M.keep_read(run, line)
  if run.kept and run.id and line:find('"type":"result"', 1, true) then
    pcall(jobs.keep_read, run.id, line)
  end
end

--- The on_output observer of a run whose child is the keeper's: the last
--- line read (M.result_read at this server's stop) and, once the run is
--- handed off, its result line kept in the record (M.keep_read).
function M.output_observer(run)
  return function(line)
    run.last_line = line
    M.keep_read(run, line)
  end
end

--- The result of kept run (its req, argv, span, last_line) when the last
--- line this server read is the child's result (as this server stops:
--- the keeper cannot read it again), settled as the server's runner
--- would have (ledger, span, cache); else nil.
function M.result_read(run)
  local line = run.last_line
  if type(line) ~= "string" or not line:find('"result"', 1, true) then return nil end
  local ok, kind, payload = pcall(require("ad.domain.claude").event, line)
  if not (ok and kind == "result") then return nil end
  local meta = meta_of(run)
  meta.stream = true -- a payload in hand, whatever the mode
  local okr, r = pcall(result_of, { payload = payload,
    info = { exit_code = 0, signal = 0, stderr = "", timed_out = false } }, meta,
    require("ad.domain.request").view(run.req))
  if not okr then return nil end
  M.settle(meta, r, run.req.settings) -- first: whoever sees the job end finds its span ended
  return r
end

--- This server is stopping with run (kept, job id) still running there:
--- if the last line it read is the child's result, the keeper cannot read
--- it again, so the job's end is recorded here and now (the keeper then
--- lets the child finish without recording anything). A live turn's slot
--- is left to the keeper's copy (its count ends here, its lock stays).
function M.record_read(id, run)
  -- A live turn's slot stays the keeper's: not given back from here.
  if run.slot then run.slot:leave() end
  local r = M.result_read(run)
  if r then finish(id, r) end
end

-- Reads a child whose job ended already (the server recorded it, or it
-- was cancelled) to its end, recording nothing.
local function drain(p)
  while p:read_line() do end
  p:wait()
  p:close()
end

-- Runs one handed-off child to its end: a = meta, pid, stdout fd, stderr
-- fd, exited, status, signal, milliseconds since its start, the fd of its
-- concurrency slot file (-1: none), given back once the child is gone,
-- the fd of a copy of its stdin (-1: none), closed once its result is read.
local run_child
local function run_one(a, children)
  local slot = tonumber(a[9]) or -1
  local ok, err = pcall(run_child, a, children)
  if slot >= 0 then core.keeper.release_slot(slot) end
  if a.input then core.keeper.close_input(a.input) end
  if not ok then error(err, 0) end
end

--- Takes over kept child a (as run_one's) as a process object of this
--- process: returns it and its meta (nil when unreadable).
function M.adopt(a)
  local ok, meta = pcall(json.decode, a[1])
  local pid, out, err = tonumber(a[2]), tonumber(a[3]), tonumber(a[4])
  local runner = require "ad.domain.runner"
  meta = ok and type(meta) == "table" and meta or nil
  local timeout = meta and tonumber(meta.timeout)
  local left = timeout and math.max(0.01, timeout - (tonumber(a[8]) or 0) / 1000) or nil
  -- (a remote agent's ssh gets the grace the server gives it)
  local grace = meta and type(meta.host) == "string" and require("ad.domain.remote").KILL_GRACE
    or runner.kill_grace
  -- (the output cap of the server's runner: M.read marks what it cut)
  local cap = runner.MAX_OUTPUT
  local p = core.proc.spawn{ argv = { "(kept)" }, timeout = left, grace = grace,
    drain = runner.drain, max_line = cap, max_output = not (meta and meta.stream) and cap or nil,
    adopt = { pid = pid, out = out, err = err, exited = a[5] == "1",
      status = tonumber(a[6]), signal = tonumber(a[7]) } }
  return p, meta
end

M.drain = drain

--- True when one of lines is a result line.
function M.has_result(lines)
  for _, l in ipairs(lines) do
    if l:find('"type":"result"', 1, true) then return true end
  end
  return false
end

--- Reads kept child p (meta: its meta) to its end and returns its
--- DispatchResult as the server's runner would have made it (view: the
--- request's view for the after_result hooks). on_tail(tail), optional,
--- hears of its progress (stream-json assistant lines; tail: from rec's
--- progress) at most every FLUSH_EVERY seconds and at the end. a, optional:
--- the child's numbers; a.input, a copy of its stdin, is closed once its
--- result line is in.
function M.read(p, meta, view, tail, on_tail, a)
  local claude = require "ad.domain.claude"
  local runner = require "ad.domain.runner"
  local plugins = package.loaded["ad.domain.plugins"]
  local filter = plugins and plugins.progress_filter()
  local run, last = { lines = {} }, core.task.now()
  while true do
    local line = p:read_line()
    if line == nil then break end
    if a and a.input and line:find('"type":"result"', 1, true) then
      -- A remote agent's answer is in: its input ends, so the far side
      -- ends what claude left there (ad.domain.remote), as the server does.
      core.keeper.close_input(a.input)
      a.input = nil
    end
    if meta.stream then
      local kind, payload, progress = claude.event(line)
      if kind == "result" then
        run.payload = payload
      elseif kind == "assistant" and on_tail then
        for _, t in ipairs(progress) do note(tail, filter and filter(t) or t) end
        if core.task.now() - last >= require("ad.domain.async").FLUSH_EVERY then
          on_tail(tail)
          last = core.task.now()
        end
      end
    else
      run.lines[#run.lines + 1] = line
    end
  end
  run.info = p:wait()
  p:close()
  if type(meta.job) == "string" and not run.payload and not M.has_result(run.lines) then
    -- Its server read the result line and was killed before it recorded
    -- the job's end: the line it kept (M.keep_read).
    local saved = jobs.result_read(meta.job)
    if saved and meta.stream then
      local kind, payload = claude.event(saved)
      if kind == "result" then run.payload = payload end
    elseif saved then
      run.lines = { saved }
    end
  end
  runner.mark_truncated(run, run.info, meta.stream)
  if on_tail and #tail > 0 then on_tail(tail) end
  local okr, r = pcall(result_of, run, meta, view)
  if not okr then
    r = runner.failure(meta.agent, "cli_error", "The keeper could not interpret the " ..
      "agent's output: " .. tostring(type(r) == "table" and r.message or r))
  end
  return r
end

M.process_of = jobs.process_identity

function run_child(a, children)
  local p, meta = M.adopt(a)
  local id = meta and meta.job
  local rec = type(id) == "string" and jobs.valid(id) and jobs.get(id)
  if not rec then
    p:kill(true) -- no job any more: nobody wants its answer
    return drain(p)
  end
  if jobs.TERMINAL[rec.status] then
    -- Its answer was recorded already: a remote side may end now.
    if a.input then core.keeper.close_input(a.input) a.input = nil end
    return drain(p)
  end
  children[id] = p
  local me = jobs.server_identity()
  jobs.set_owner(id, me)
  -- (the child's mark, as the server that handed it over recorded it)
  local pid, old = tonumber(a[2]), rec.process
  local process = M.process_of(pid, type(old) == "table" and old.pid == pid and old.mark or nil)
  if rec.status == "pending" then jobs.mark_running(id, process) else jobs.set_process(id, process) end
  local tail = type(rec.progress) == "table" and util.copy(rec.progress) or {}
  local view = { agent = rec.agent, task = rec.task, context = rec.context, caller = rec.caller,
    goal = rec.goal, response_format = meta.response_format, session_id = meta.session_id }
  local r = M.read(p, meta, view, tail, function(t) pcall(jobs.update_progress, id, t) end, a)
  children[id] = nil
  M.settle(meta, r) -- first: whoever sees the job end finds its span ended
  finish(id, r)
end

--- Numbers per child on __keeper-run's command line (src/keeper.c).
local NUMS = 9

--- `agent-dispatch __keeper-run META_FD` followed by NUMS numbers per
--- child (src/keeper.c, take_over); META_FD holds each child's meta, a
--- line each. Returns the exit status.
function M.main(args)
  local tasks, children, fanouts = {}, {}, {}
  -- The user's hooks (redact, after_result, job_done) run here as in the
  -- server, under the same runaway-code budget.
  local plugins = require "ad.domain.plugins"
  pcall(plugins.load, function() end, {})
  core.task.set_budget(plugins.CALL_BUDGET)
  -- (the result cache's settings: M.settle)
  local okc, cfg = pcall(require("ad.storage.config").load)
  settings = okc and type(cfg) == "table" and cfg.settings or nil
  local metas = {}
  local f = tonumber(args[1]) and io.open("/proc/self/fd/" .. args[1], "r")
  if f then
    for line in f:lines() do metas[#metas + 1] = line end
    f:close()
  end
  local n = 0
  for i = 2, #args - (NUMS - 1), NUMS do
    n = n + 1
    local a = table.move(args, i, i + NUMS - 1, 2, { metas[n] or "" })
    local input = tonumber(a[10]) or -1
    a.input = input >= 0 and input or nil
    -- A handed-off fan-out's children and the job itself (held: no
    -- child, a negative key) go to one task (ad.domain.fanout).
    local okm, meta = pcall(json.decode, a[1])
    local job = okm and type(meta) == "table" and (meta.item ~= nil or meta.fanout == true) and meta.job
    if type(job) == "string" then
      fanouts[job] = fanouts[job] or {}
      if meta.item ~= nil and tonumber(a[2]) > 0 then fanouts[job][meta.item] = a end
    else
      tasks[#tasks + 1] = core.task.spawn(function()
        local ok, e = pcall(run_one, a, children)
        if not ok then io.stderr:write("agent-dispatch: keeper: ", tostring(e), "\n") end
      end)
    end
  end
  local fanned = {}
  for job, kids in pairs(fanouts) do
    fanned[job] = core.task.spawn(function()
      local ok, e = pcall(require("ad.domain.fanout").finish_kept, job, kids)
      if not ok then io.stderr:write("agent-dispatch: keeper: ", tostring(e), "\n") end
    end)
    tasks[#tasks + 1] = fanned[job]
  end
  -- A shutdown signal (the machine stopping) ends the jobs honestly.
  local watcher = core.task.spawn(function()
    local sig = core.signal.wait()
    if not sig then return end
    for id, p in pairs(children) do
      jobs.fail_unstored(id, "The keeper that ran this handed-off call after its server " ..
        "exited was stopped (" .. sig .. "); its subprocess was killed. Re-dispatch if needed.")
      p:kill(true)
    end
    for id, t in pairs(fanned) do
      if not t:done() then
        jobs.fail_unstored(id, "The keeper that ran this handed-off fan-out after its server " ..
          "exited was stopped (" .. sig .. "); its subprocesses were killed. Re-dispatch if needed.")
        t:cancel()
      end
    end
  end)
  for _, t in ipairs(tasks) do
    while not t:done() do if t:wait() == nil then break end end
  end
  watcher:cancel()
  return 0
end

return M
