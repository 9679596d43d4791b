--- Claude processes kept alive between calls: live sessions and the warm
--- pool. Both hold children started over the live channel
--- (ad.domain.channel) that sit idle between turns.
---
--- Live sessions: after a session turn (dispatch_session, a dialogue turn)
--- ran over the channel and succeeded, its process is kept here, keyed by
--- its session id, with the agent's name and the fingerprint of what
--- started it (argv without the session flags, environment without the
--- trace context, working directory). A continuation of that session for
--- the same agent and the same fingerprint takes it (take_session) and
--- sends the next user message to it, instead of spawning `--resume`.
--- Anything else never gets it: another agent, another argv (model,
--- budget, permission mode, tools, schema, relay) or another environment
--- falls back to `--resume`, and the kept process is retired first so
--- that two processes never write one session. The CLI's budget cap
--- (--max-budget-usd) counts every turn of a process together, so a
--- request with a budget is never kept: it resumes with a cap of its own.
---
--- Warm pool: an agent with `warm: N` has N processes started ahead (want,
--- fill_agent) with its default command line and a fresh session id, idle
--- until a fresh dispatch of that agent with the same fingerprint takes
--- one (take_warm; the task goes as its first user message). A taken
--- process serves one conversation only: it never goes back to the pool (a
--- session turn may keep it as that session's live process), and the pool
--- is refilled at once. A pool process that dies idle is replaced after a
--- backoff (1 s doubling to 60 s, reset when one is taken), never in a
--- loop.
---
--- Bounds: settings.live_sessions {max, idle_seconds}: at most max idle
--- session processes (the least recently used is retired first), each
--- retired after idle_seconds without a turn. An idle process holds no
--- concurrency slot: each turn takes one (M.run), and a kept process is
--- spawned without one and without a lifetime timeout (the timeout is
--- the turn's). Retiring closes the child's stdin (the CLI ends between
--- turns), waits RETIRE_GRACE, then kills its process group; shutdown
--- does that for every process at once. A server killed with SIGKILL
--- leaves none (PR_SET_PDEATHSIG, src/proc.c).
---
--- stats() (live_stats, `agent-dispatch live`) lists every process with
--- its agent, pid, session id, idle time and RSS; each server process
--- publishes that list in <jobs dir>/live/<pid>.json (owner-only) so the
--- CLI can show the processes of every running server.
---
--- Over 500 lines on purpose: sessions, the pool, a turn on a kept process,
--- the stats and shutdown share one registry of kept processes and its
--- bounds (LRU, idle tick); split, each would have to keep its invariants.
local core = require "ad.core"
local json = require "ad.infra.json"
local errors = require "ad.infra.errors"
local channel = require "ad.domain.channel"
local trace_file = require "ad.domain.trace_file"
local slot_gate = require "ad.domain.slot"
local marks = require "ad.storage.session_marks"

local M = {}

--- Seconds a retired process gets to end after its stdin closed.
M.RETIRE_GRACE = 2
--- Seconds between looks at idle sessions (expiry) and pool refills.
M.TICK = 1
--- Backoff of the pool after a process died idle or failed to start.
M.BACKOFF_MIN, M.BACKOFF_MAX = 1, 60

-- The idle session processes: session id -> entry; entry = {ch, agent, fp,
-- kind ("session"|"warm"), since (idle since, monotonic), since_wall,
-- turns, cost (the CLI's running total_cost_usd), watcher (the task that
-- notices its death while idle)}.
local sessions, n_sessions = {}, 0
-- The warm pool: agent -> list of entries (kind "warm").
local pool = {}
-- Per agent: {want = N, backoff = s, next_at = t, filling = bool}.
local wants = {}
local bounds = { max = 4, idle_seconds = 300 }
local totals = { kept = 0, reused = 0, warm_started = 0, warm_taken = 0,
  evicted = 0, expired = 0, died = 0 }
local ticker, stopping = nil, false
-- The process that starts a pool child: fn(agent_name, cfg) -> channel,
-- fingerprint | nil, message (the runner, which knows the command line).
M.opener = function(name, cfg) return require("ad.domain.runner").open_warm(name, cfg) end
M.cfg = nil

local function now() return core.task.now() end

--- The key of what a child was started with: two children with the same
--- key behave the same for the same message. argv without the session
--- flags (--session-id, --resume and their values), the environment
--- without the trace context (AGENT_DISPATCH_TRACE of a fresh child, the
--- context file of a kept one: ad.domain.trace_file), cwd.
function M.fingerprint(agent_name, argv, env, cwd)
  local a = {}
  local i = 1
  while i <= #argv do
    local v = argv[i]
    if v == "--session-id" or v == "--resume" then
      i = i + 2
    else
      a[#a + 1] = v
      i = i + 1
    end
  end
  local e = {}
  for _, kv in ipairs(env or {}) do
    if not (kv:sub(1, 21) == "AGENT_DISPATCH_TRACE=" or
        kv:sub(1, 26) == "AGENT_DISPATCH_TRACE_FILE=") then
      e[#e + 1] = kv
    end
  end
  table.sort(e)
  return json.encode(json.array{ agent_name, json.array(a), json.array(e), cwd or "" })
end

--- Takes the bounds from the settings of the call (the config is re-read
--- on each call): settings.live_sessions {max, idle_seconds}.
--- The environment of a kept process: env without AGENT_DISPATCH_TRACE
--- (fixed at spawn, while the process serves one request after the other)
--- and with AGENT_DISPATCH_TRACE_FILE naming a new private context file
--- that M.run writes before each turn. Returns the env and the file's
--- path (nil when none could be made: dispatches made inside the process
--- then start trees of their own).
function M.with_context_file(env)
  local path = trace_file.new_path()
  local out = {}
  for _, kv in ipairs(env) do
    if kv:sub(1, 21) ~= "AGENT_DISPATCH_TRACE=" then out[#out + 1] = kv end
  end
  if path then out[#out + 1] = trace_file.ENV .. "=" .. path end
  return out, path
end

-- A kept child's process object goes, and its context file with it.
local function release(ch)
  if ch.ctx_file then
    trace_file.remove(ch.ctx_file)
    ch.ctx_file = nil
  end
  ch:release()
end

function M.configure(settings)
  local l = settings and settings.live_sessions
  if l then
    bounds.max, bounds.idle_seconds = l.max, l.idle_seconds
    M.fit() -- a lowered bound holds for the processes kept already
  end
end

function M.bounds() return bounds end

local publish -- forward

-- ------------------------------------------------------------ retiring --

-- Ends a child: stdin closed (the CLI ends between turns), lines drained,
-- its group killed after RETIRE_GRACE if it is still there, reaped.
local function end_child(ch)
  if not ch.exited then
    ch:close()
    local done = false
    local timer = core.task.spawn(function()
      core.task.sleep(M.RETIRE_GRACE)
      if not done then ch:kill() end
    end)
    while true do
      local kind, why = ch:read_event(nil)
      if kind == nil and why == "eof" then break end
      if kind == nil then ch:kill() end -- cancelled: no more grace
    end
    local info = ch:wait()
    while not info do
      ch:kill()
      info = ch:wait()
    end
    done = true
    timer:cancel()
  end
  release(ch)
end

local function unwatch(entry)
  if entry.watcher then
    local w = entry.watcher
    entry.watcher = nil
    w:cancel()
  end
end

-- Retires one entry (in a task of its own unless wait).
local function retire(entry, wait)
  unwatch(entry)
  if entry.retired then return end
  entry.retired = true
  if wait then
    pcall(end_child, entry.ch)
  else
    core.task.spawn(function() pcall(end_child, entry.ch) end)
  end
end

local function drop_session(sid)
  local e = sessions[sid]
  if e then
    sessions[sid] = nil
    n_sessions = n_sessions - 1
  end
  return e
end

local function drop_warm(entry)
  local list = pool[entry.agent]
  for i, e in ipairs(list or {}) do
    if e == entry then
      table.remove(list, i)
      return true
    end
  end
  return false
end

-- The least recently used idle session.
local function oldest()
  local best
  for _, e in pairs(sessions) do
    if not best or e.since < best.since then best = e end
  end
  return best
end

--- Ends the least recently used kept sessions past bounds.max.
function M.fit()
  local evicted = false
  while n_sessions > math.max(bounds.max, 0) do
    local lru = oldest()
    drop_session(lru.ch.session_id)
    retire(lru)
    totals.evicted = totals.evicted + 1
    evicted = true
  end
  if evicted then publish() end
end

local ensure_ticker -- forward

-- Watches an idle entry: its stdout stays quiet until the next turn, so
-- the end of it means the child died idle. The read is cancelled (without
-- harm to the child: channels are spawned with soft_cancel) when the entry
-- is taken.
local function watch(entry)
  entry.watcher = core.task.spawn(function()
    while true do
      local kind, why = entry.ch:read_event(nil)
      if kind == nil then
        if why == "cancelled" or entry.watcher == nil then return end
        break -- eof: it died
      end
    end
    entry.watcher = nil
    totals.died = totals.died + 1
    if entry.kind == "session" then
      if sessions[entry.ch.session_id] == entry then drop_session(entry.ch.session_id) end
    elseif drop_warm(entry) then
      local w = wants[entry.agent]
      if w then
        w.next_at = now() + w.backoff
        w.backoff = math.min(w.backoff * 2, M.BACKOFF_MAX)
        ensure_ticker()
      end
    end
    retire(entry)
    publish()
  end)
end

-- ------------------------------------------------------------ the tick --

-- Once a TICK: idle sessions past idle_seconds are retired, pools below
-- their size are refilled once their backoff has passed. Runs while
-- anything is kept or wanted.
local function tick()
  while not stopping do
    if core.task.sleep(M.TICK) == nil then return end
    local t = now()
    local changed = false
    for sid, e in pairs(sessions) do
      if t - e.since >= bounds.idle_seconds then
        drop_session(sid)
        retire(e)
        totals.expired = totals.expired + 1
        changed = true
      end
    end
    for name, w in pairs(wants) do
      if w.want > #(pool[name] or {}) and not w.filling and t >= (w.next_at or 0) then
        M.fill_agent(name)
      end
    end
    if changed then publish() end
    if n_sessions == 0 and next(wants) == nil then
      ticker = nil
      return
    end
  end
end

function ensure_ticker()
  if not ticker and not stopping then ticker = core.task.spawn(tick) end
end

-- ------------------------------------------------------------- sessions --

--- The idle live process of session sid, taken out of the registry for
--- one turn (the caller owns it until keep or its end), when it belongs
--- to agent_name, was started with fingerprint fp and saw the session's
--- last turn (mark: the session's turn mark read before this turn,
--- ad.storage.session_marks; another token means another process ran a
--- turn since). A process of that session that does not match is retired
--- (waited for: --resume must not run beside it) and nil returned.
function M.take_session(sid, agent_name, fp, mark)
  local e = sessions[sid]
  if not e then return nil end
  drop_session(sid)
  unwatch(e)
  if e.agent ~= agent_name or e.fp ~= fp or e.mark ~= mark or not e.ch:alive() then
    retire(e, true)
    publish()
    return nil
  end
  totals.reused = totals.reused + 1
  publish()
  return e
end

--- Ends the idle live process of session sid, if one is kept (a session
--- nobody will continue: a finished dialogue's).
function M.release(sid)
  local e = drop_session(sid)
  if e then
    retire(e)
    publish()
  end
end

--- Keeps the process of a finished, successful session turn idle for the
--- next one. Evicts the least recently used session past the bound.
--- Returns false when it may not be kept (max 0, stopping, no session
--- id): the caller ends the child as usual.
function M.keep(entry)
  if stopping or bounds.max <= 0 then return false end
  local sid = entry.ch.session_id
  if not sid or not entry.ch:alive() then return false end
  entry.kind = "session"
  entry.since, entry.since_wall = now(), core.task.time()
  -- A fresh session's process (or a warm one) makes the session's first
  -- mark; a resumed one made its mark when its turn began (M.run).
  if not entry.mark then entry.mark = marks.new_turn(sid) end
  local old = drop_session(sid)
  if old and old ~= entry then retire(old) end
  while n_sessions >= bounds.max do
    local lru = oldest()
    drop_session(lru.ch.session_id)
    retire(lru)
    totals.evicted = totals.evicted + 1
  end
  sessions[sid] = entry
  n_sessions = n_sessions + 1
  totals.kept = totals.kept + 1
  watch(entry)
  ensure_ticker()
  publish()
  return true
end

-- ------------------------------------------------------------ warm pool --

-- The agents whose entries changed since the pool was filled: their pool
-- processes were started with what the entry said before.
local changed_agents = {}
local serving = false
require("ad.storage.config").on_agents_changed(function(names)
  if not serving then return end
  for _, n in ipairs(names) do changed_agents[n] = true end
  if core.task.in_task() then
    core.task.spawn(function()
      local ok, cfg = pcall(require("ad.storage.config").load)
      if ok and cfg then M.want(cfg) end
    end)
  end
end)

--- The server (serve) keeps pools: those of cfg start now, and a change
--- of agents.yaml (seen when the server re-reads it, on its next call)
--- starts, resizes or restarts them.
function M.serve(cfg)
  serving = true
  M.want(cfg)
end

--- Sets the wanted pool sizes from a config (agents with warm: N) and
--- starts what is missing. Agents no longer wanting a pool, or whose entry
--- changed, have theirs retired.
local unusable_said = {} -- agents whose pool was said to be unusable

function M.want(cfg)
  if stopping or not cfg then return end
  M.configure(cfg.settings)
  M.cfg = cfg
  for name in pairs(changed_agents) do
    for _, e in ipairs(pool[name] or {}) do retire(e) end
    pool[name] = nil
  end
  changed_agents = {}
  local function drop_pool(name)
    wants[name] = nil
    for _, e in ipairs(pool[name] or {}) do retire(e) end
    pool[name] = nil
  end
  for name in pairs(wants) do
    local a = cfg.agents[name]
    if not a or (a.warm or 0) == 0 or a.host then drop_pool(name) end
  end
  -- Under a tree spend cap every request carries what is left of it (its
  -- own --max-budget-usd), which no process started ahead can match: no
  -- pool is kept then (said once).
  local capped = cfg.settings and require("ad.domain.trace").cap_of(cfg.settings.tree_budget_usd)
  for _, name in ipairs(cfg.agent_names) do
    local a = cfg.agents[name]
    if capped and (a.warm or 0) > 0 and not a.host and not unusable_said[name] then
      unusable_said[name] = true
      io.stderr:write("agent-dispatch: warning: warm: ", a.warm, " of agent ", name, " is not ",
        "used: with settings.tree_budget_usd every dispatch carries its own spend cap, which a ",
        "process started ahead cannot take\n")
    end
    if capped then
      if wants[name] then drop_pool(name) end
    elseif (a.warm or 0) > 0 and not a.host then
      wants[name] = wants[name] or { want = a.warm, backoff = M.BACKOFF_MIN, next_at = 0 }
      wants[name].want = a.warm
      local list = pool[name] or {}
      while #list > a.warm do retire(table.remove(list)) end
    end
  end
  for name in pairs(wants) do M.fill_agent(name) end
  if next(wants) then ensure_ticker() end
  publish()
end

--- Starts the missing pool processes of one agent, in a task of its own,
--- one after the other (two CLIs starting together on two cores slow each
--- other down).
function M.fill_agent(name)
  local w = wants[name]
  if not w or w.filling or stopping or not M.opener then return end
  if now() < (w.next_at or 0) then return end
  w.filling = true
  core.task.spawn(function()
    local ok, err = pcall(function()
      while not stopping and wants[name] == w and #(pool[name] or {}) < w.want do
        local ch, fp, sid = M.opener(name, M.cfg)
        if not ch then
          w.next_at = now() + w.backoff
          w.backoff = math.min(w.backoff * 2, M.BACKOFF_MAX)
          io.stderr:write("agent-dispatch: warning: cannot start a warm process of ", name,
            ": ", tostring(fp), "\n")
          break
        end
        local e = { ch = ch, agent = name, fp = fp, kind = "warm", since = now(),
          since_wall = core.task.time(), turns = 0, session_id = sid, born = now() }
        if stopping or wants[name] ~= w then
          retire(e)
          break
        end
        pool[name] = pool[name] or {}
        local list = pool[name]
        list[#list + 1] = e
        totals.warm_started = totals.warm_started + 1
        watch(e)
        publish()
      end
    end)
    w.filling = false
    if not ok then
      io.stderr:write("agent-dispatch: warning: the warm pool of ", name,
        " could not be filled: ", tostring(type(err) == "table" and err.message or err), "\n")
    end
  end)
end

--- A pool process of agent_name started with fingerprint fp, taken for
--- one fresh conversation (never put back), or nil. The pool is refilled.
function M.take_warm(agent_name, fp)
  local list = pool[agent_name]
  if not list then return nil end
  for i, e in ipairs(list) do
    if e.fp == fp and e.ch:alive() then
      table.remove(list, i)
      unwatch(e)
      totals.warm_taken = totals.warm_taken + 1
      local w = wants[agent_name]
      if w then w.backoff = M.BACKOFF_MIN end
      M.fill_agent(agent_name)
      publish()
      return e
    end
  end
  return nil
end

-- ---------------------------------------------------------------- a turn --

--- Whether a request may run on a kept process at all: a local agent over
--- the live channel, no budget cap (the CLI's cap counts every turn of a
--- process together), no tree spend cap.
local function reusable(req, budget)
  return budget == nil and req.tree_left == nil
end

--- Whether the runner should hand this request to M.run: there is a
--- session process or a pool for it, or it is a session turn that may be
--- kept. Cheap: no fingerprint.
function M.wanted(req, budget)
  if stopping or req.agent.host then return false end
  M.configure(req.settings)
  if req.session_id then
    if sessions[req.session_id] then return true end
  elseif pool[req.agent_name] and #pool[req.agent_name] > 0 then
    return true
  end
  return bounds.max > 0 and reusable(req, budget) and
    (req.span_kind == "session" or req.span_kind == "turn")
end

local function cancelled_error(sid)
  local e = errors.new("cancelled", "cancelled")
  e.session_id = sid
  return e
end

-- The result line of a turn as one-shot runs report it: total_cost_usd
-- is the process's running total, so a later turn reports its own share.
local function own_cost(payload, entry)
  local total = payload.total_cost_usd
  if type(total) ~= "number" then return payload end
  local before = entry.cost or 0
  entry.cost = total
  if before == 0 then return payload end
  local p = {}
  for k, v in pairs(payload) do p[k] = v end
  p.total_cost_usd = math.max(0, total - before)
  return p
end

-- A new live child for a session turn: spawned without the slot (it holds
-- one per turn, in M.run) and without a lifetime timeout (each turn has
-- one); the keeper's child when the request's would be (ad.domain.keeper).
-- Returns the entry, or nil and the runner's spawn_error.
local function spawn(o, fp)
  local req = o.req
  local env, ctx_file = M.with_context_file(o.env)
  local ch, msg, code = channel.open{ argv = o.argv, cwd = o.cwd, env = env,
    grace = o.grace, drain = o.drain, gated = req.on_spawn ~= nil,
    max_line = o.cap, session_id = o.resume or o.fresh,
    keeper = req.keeper }
  if not ch then
    trace_file.remove(ctx_file)
    return nil, { msg, code }
  end
  ch.ctx_file = ctx_file
  return { ch = ch, agent = req.agent_name, fp = fp, kind = "session", turns = 0, born = now() }
end

local function read_turn(ch, handlers)
  local payload
  while true do
    local kind, obj = ch:read_event(handlers)
    if kind == nil then return payload, obj == "cancelled" end
    if kind == "result" then
      payload = obj
      if (ch.sent or 0) <= (ch.turns or 0) then return payload, false end
    end
  end
end

-- The child ended (or was killed at the deadline) without a result: its
-- exit info, as a one-shot child reports it.
local function ended(ch, req, out, handlers, timed_out)
  ch:close()
  while ch:read_event(handlers) do end
  local info = ch:wait()
  while not info do
    ch:kill()
    info = ch:wait()
  end
  release(ch)
  -- A line over the cap was dropped (the channel closed the child's
  -- input then): it may have been the result.
  if (info.skipped_lines or 0) > 0 and not out.payload then out.truncated = true end
  -- Stray stdout past the cap was dropped in C (ch:limit_plain).
  if not req.stream and info.truncated then out.truncated = true end
  local i = {}
  for k, v in pairs(info) do i[k] = v end
  i.timed_out = i.timed_out or timed_out
  out.info = i
  return out
end

--- One turn of a request on a kept, pooled or newly spawned live process.
--- o: argv (the live command line), env, cwd, text, req, timeout, budget,
--- resume (session id), mark (its turn mark before this turn, see
--- take_session), fresh (the new session id of argv), grace, drain,
--- cap (bytes of stray stdout kept), interrupt_grace. Returns the run
--- table for ad.domain.claude.interpret (payload, info, lines, live,
--- session_id, fresh), or nil when nothing here applies (the runner then
--- runs the child its usual way). Raises the cancelled error, as the
--- runner does, after the child is gone.
function M.run(o)
  local req = o.req
  local fp = M.fingerprint(req.agent_name, o.argv, o.env, o.cwd)
  local entry
  if o.resume then
    entry = M.take_session(o.resume, req.agent_name, fp, o.mark)
  else
    entry = M.take_warm(req.agent_name, fp)
  end
  local keepable = bounds.max > 0 and reusable(req, o.budget) and
    (req.span_kind == "session" or req.span_kind == "turn")
  if not entry and not keepable then return nil end
  local got, slot = pcall(slot_gate.take, req)
  if not got then
    if entry then retire(entry) end
    error(slot, 0)
  end
  local spawned = entry == nil
  if spawned then
    local why
    entry, why = spawn(o, fp)
    if not entry then
      slot:release()
      return { spawn_error = why }
    end
    -- A resume in a new process: a turn other kept processes of the
    -- session (in other servers) will not have seen.
    if o.resume then entry.mark = marks.new_turn(o.resume) end
  end
  local ch = entry.ch
  local refused = req.on_spawn ~= nil and req.on_spawn(ch.pid) == false
  if refused then
    if spawned then ch:kill(true) end
  else
    if spawned then ch:start() end
    -- on_pid: the process, how long it had lived before this turn (a
    -- handed-off turn's timeout counts from the turn's start) and the
    -- turn's slot (the keeper holds it for a handed-off turn).
    if req.on_pid then req.on_pid(ch.pid, o.argv, now() - (entry.born or now()), slot) end
    if req.on_started then req.on_started() end
  end
  local out = { lines = {}, live = true,
    session_id = o.resume or entry.session_id or ch.session_id or o.fresh,
    fresh = o.fresh ~= nil and spawned }
  -- The trace context of this turn, for an agent-dispatch inside the
  -- child (it reads the file at each call it gets).
  if not refused and ch.ctx_file then trace_file.write(ch.ctx_file, req.trace_env) end
  -- Stray stdout past the cap is dropped in C (as on a one-shot live
  -- child): megabytes of it never become Lua strings. Per turn: the
  -- process serves one request after another.
  if not refused then ch:limit_plain((not req.stream) and o.cap or nil) end
  if not refused and not ch:send_user(o.text) then
    if not spawned then
      -- It died between turns: the usual way, then.
      slot:release()
      retire(entry, true)
      return nil
    end
    refused = true
  end
  local handlers = channel.handlers(req, o.cap, out)
  local timed_out = false
  local timer = (o.timeout or 0) > 0 and core.task.spawn(function()
    if core.task.sleep(o.timeout) then
      timed_out = true
      ch:kill()
    end
  end) or nil
  local payload, cancelled
  if not refused then
    if req.on_channel then req.on_channel(ch) end
    payload, cancelled = read_turn(ch, handlers)
    if req.on_channel then req.on_channel(nil) end
  end
  if timer then timer:cancel() end
  slot:release()
  -- A handed-off turn is over here: the process is no job any more.
  core.keeper.forget(ch.pid)
  entry.turns = (entry.turns or 0) + 1
  out.session_id = ch.session_id or out.session_id
  if cancelled or core.task.cancelled() then
    ch:stop(o.interrupt_grace)
    release(ch)
    error(cancelled_error(out.session_id), 0)
  end
  if not payload or timed_out then
    entry.retired = true
    return ended(ch, req, out, handlers, timed_out)
  end
  out.payload = own_cost(payload, entry)
  out.info = channel.ANSWERED
  local clean = payload.is_error ~= true and payload.subtype == "success"
  if clean and keepable and M.keep(entry) then
    -- Idle until the next turn: no span to join.
    if ch.ctx_file then trace_file.write(ch.ctx_file, nil) end
  else
    retire(entry)
  end
  return out
end

-- ----------------------------------------------------------------- stats --

--- Resident memory of pid in kB (VmRSS), or nil.
local function rss_kb(pid)
  local f = io.open("/proc/" .. tostring(pid) .. "/status", "r")
  if not f then return nil end
  local text = f:read("a")
  f:close()
  return math.tointeger(tonumber((text or ""):match("VmRSS:%s*(%d+)")))
end
M.rss_kb = rss_kb

local function row(e, t)
  local pid = e.ch.pid
  return json.object({ kind = e.kind, agent = e.agent, pid = pid,
    session_id = e.ch.session_id or e.session_id or json.null,
    idle_seconds = math.floor((t - e.since) * 10 + 0.5) / 10,
    idle_since = e.since_wall, turns = e.turns or 0, rss_kb = rss_kb(pid) or json.null },
    { "kind", "agent", "pid", "session_id", "idle_seconds", "idle_since", "turns", "rss_kb" })
end

--- Every kept process of this server with totals and bounds.
function M.stats()
  local t = now()
  local list = json.array()
  local rss = 0
  local sids = {}
  for sid in pairs(sessions) do sids[#sids + 1] = sid end
  table.sort(sids, function(a, b) return sessions[a].since < sessions[b].since end)
  for _, sid in ipairs(sids) do list[#list + 1] = row(sessions[sid], t) end
  local names = {}
  for name in pairs(pool) do names[#names + 1] = name end
  table.sort(names)
  local warm = 0
  for _, name in ipairs(names) do
    for _, e in ipairs(pool[name]) do
      list[#list + 1] = row(e, t)
      warm = warm + 1
    end
  end
  for _, r in ipairs(list) do
    if r.rss_kb ~= json.null then rss = rss + r.rss_kb end
  end
  local wanted, wnames = {}, {}
  for name, w in pairs(wants) do wanted[name] = w.want; wnames[#wnames + 1] = name end
  table.sort(wnames)
  return json.object({
    server_pid = core.sys.getpid(),
    processes = list,
    sessions = n_sessions,
    warm = warm,
    rss_kb = rss,
    bounds = json.object({ max = bounds.max, idle_seconds = bounds.idle_seconds,
      warm = json.object(wanted, wnames) }, { "max", "idle_seconds", "warm" }),
    totals = json.object(totals, { "kept", "reused", "evicted", "expired", "died",
      "warm_started", "warm_taken" }),
  }, { "server_pid", "sessions", "warm", "rss_kb", "bounds", "totals", "processes" })
end

-- --------------------------------------------------------- publication --

-- The file the CLI reads: <jobs dir>/live/<server pid>.json.
local function stats_path()
  local ok, dir = pcall(function() return require("ad.storage.jobs").dir() end)
  if not ok or not dir then return nil end
  return dir .. "/live", dir .. "/live/" .. core.sys.getpid() .. ".json"
end
M.stats_path = stats_path

local published, dirty = false, false

-- Writes the stats file soon (coalesced: one write for a burst of
-- changes); removes it when nothing is kept.
function publish()
  if dirty or not core.task.in_task() then return end
  dirty = true
  core.task.spawn(function()
    core.task.sleep(0.05)
    dirty = false
    local dir, path = stats_path()
    if not path then return end
    local s = M.stats()
    if #s.processes == 0 and not next(wants) then
      if published then core.fs.unlink(path) published = false end
      return
    end
    if core.fs.mkdirs(dir) then
      published = core.fs.write_atomic(path, json.encode(s), 384, true) and true or published
    end
  end)
end

--- The stats of every server that runs (the file of a server that is
--- gone is removed): a list of stats tables.
function M.read_all()
  local dir = stats_path()
  local out = {}
  if not dir then return out end
  local names = core.fs.listdir(dir) or {}
  table.sort(names)
  for _, n in ipairs(names) do
    local pid = math.tointeger(tonumber(n:match("^(%d+)%.json$")))
    if pid and rss_kb(pid) then
      -- Only a file this user's servers wrote (not one others could).
      local text = core.fs.read_trusted(dir .. "/" .. n, 1024 * 1024)
      local s = text and json.decode(text)
      if type(s) == "table" then out[#out + 1] = s end
    elseif pid then
      core.fs.unlink(dir .. "/" .. n) -- its server is gone
    end
  end
  return out
end

-- ------------------------------------------------------------- shutdown --

--- Ends every kept process (stdin closed, then the group killed after
--- RETIRE_GRACE), waits for them, and removes the stats file. Nothing is
--- kept or started afterwards.
function M.shutdown()
  stopping = true
  if ticker then ticker:cancel() ticker = nil end
  local all = {}
  local sids = {}
  for sid in pairs(sessions) do sids[#sids + 1] = sid end
  for _, sid in ipairs(sids) do all[#all + 1] = drop_session(sid) end
  for name, list in pairs(pool) do
    for _, e in ipairs(list) do all[#all + 1] = e end
    pool[name] = nil
  end
  wants = {}
  local tasks = {}
  for _, e in ipairs(all) do
    unwatch(e)
    if not e.retired then
      e.retired = true
      tasks[#tasks + 1] = core.task.spawn(function() pcall(end_child, e.ch) end)
    end
  end
  for _, t in ipairs(tasks) do t:wait() end
  local _, path = stats_path()
  if path and published then core.fs.unlink(path) published = false end
  return #all
end

--- Whether anything is kept or wanted.
function M.active()
  return n_sessions > 0 or next(pool) ~= nil or next(wants) ~= nil
end

return M
