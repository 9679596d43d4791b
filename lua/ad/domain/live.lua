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
--- budget, permission mode, tools, schema) or another environment falls
--- back to `--resume`, and the kept process is retired first so that two
--- processes never write one session.
---
--- Warm pool: an agent with `warm: N` has N processes started ahead (fill)
--- with its default command line and a fresh session id, idle until a
--- fresh dispatch of that agent with the same fingerprint takes one
--- (take_warm). A taken process serves one conversation only: it is never
--- put back in the pool (a session turn may keep it as that session's
--- live process), and the pool is refilled at once. A pool process that
--- dies idle is replaced after a backoff (1 s doubling to 60 s, reset by a
--- successful start), never in a loop.
---
--- Bounds: settings.live_sessions {max, idle_seconds}: at most max idle
--- session processes (the least recently used is retired first), each
--- retired after idle_seconds without a turn. An idle process holds no
--- concurrency slot: each turn takes one (the runner). Retiring closes the
--- child's stdin (the CLI ends between turns), waits RETIRE_GRACE, then
--- kills its process group; shutdown does that for every process at once.
--- A server killed with SIGKILL leaves none (PR_SET_PDEATHSIG, src/proc.c).
---
--- stats() (live_stats, `agent-dispatch live`) lists every process with
--- its agent, pid, session id, idle time and RSS; each server process
--- publishes that list in <jobs dir>/live/<pid>.json (owner-only) so the
--- CLI can show the processes of every running server.
local core = require "ad.core"
local json = require "ad.infra.json"

local M = {}

--- Seconds a retired process gets to end after its stdin closed.
M.RETIRE_GRACE = 2
--- Seconds between looks at idle processes (expiry, death while idle).
M.TICK = 1
--- Backoff of the pool after a process died idle or failed to start.
M.BACKOFF_MIN, M.BACKOFF_MAX = 1, 60

-- The idle session processes: session id -> entry; entry = {ch, agent, fp,
-- session_id, kind ("session"|"warm"), since (idle since, monotonic),
-- started (wall clock), turns, cost (the CLI's running total_cost_usd)}.
local sessions, n_sessions = {}, 0
-- The warm pool: agent -> list of entries (kind "warm").
local pool = {}
-- Per agent: {want = N, fp = fingerprint, backoff = s, next_at = t,
-- filling = bool}.
local wants = {}
local bounds = { max = 4, idle_seconds = 300 }
local totals = { kept = 0, reused = 0, warm_started = 0, warm_taken = 0,
  evicted = 0, expired = 0, died = 0 }
local ticker, stopping = nil, false
-- The process that starts a pool child: fn(agent_name, cfg) -> channel or
-- nil, message (set by the runner, which knows the command line).
M.opener = nil

local function now() return core.task.now() end

--- The key of what a child was started with: two children with the same
--- key behave the same for the same message. argv without the session
--- flags (--session-id, --resume and their values), the environment
--- without the trace context (a kept child keeps the one it started with:
--- dispatches it makes later are recorded under that first span), cwd.
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
    if kv:sub(1, 21) ~= "AGENT_DISPATCH_TRACE=" then e[#e + 1] = kv end
  end
  table.sort(e)
  return json.encode(json.array{ agent_name, json.array(a), json.array(e), cwd or "" })
end

--- Takes the bounds from the settings of the call (the config is re-read
--- on each call): settings.live_sessions {max, idle_seconds}.
function M.configure(settings)
  local l = settings and settings.live_sessions
  if l then
    bounds.max, bounds.idle_seconds = l.max, l.idle_seconds
  end
end

function M.bounds() return bounds end

--- Whether a session turn's process may be kept at all (max > 0).
function M.enabled(settings)
  M.configure(settings)
  return bounds.max > 0
end

-- ------------------------------------------------------------ retiring --

-- Ends one child: stdin closed (it ends between turns), then after the
-- grace its group is killed. Runs in a task of its own unless wait.
local function retire(entry, wait)
  local ch = entry.ch
  local function go()
    pcall(ch.close, ch)
    local deadline = now() + M.RETIRE_GRACE
    while ch:alive() and now() < deadline do core.task.sleep(0.02) end
    pcall(ch.kill, ch)
    if ch.reap then pcall(ch.reap, ch) end
  end
  if wait then go() else core.task.spawn(go) end
end

local publish -- forward

local function drop_session(sid)
  local e = sessions[sid]
  if e then
    sessions[sid] = nil
    n_sessions = n_sessions - 1
  end
  return e
end

-- The least recently used idle session.
local function oldest()
  local best
  for _, e in pairs(sessions) do
    if not best or e.since < best.since then best = e end
  end
  return best
end

-- ------------------------------------------------------------ the tick --

local function fill_agent(name) -- forward-declared user below
  return M.fill_agent(name)
end

-- Looks at every idle process once a TICK: expiry of sessions, death of
-- idle processes (a pool process that died is replaced after the
-- backoff). Runs while anything is kept or wanted.
local function tick()
  while not stopping do
    if core.task.sleep(M.TICK) == nil then return end
    local t = now()
    local changed = false
    for sid, e in pairs(sessions) do
      if not e.ch:alive() then
        drop_session(sid)
        retire(e)
        totals.died = totals.died + 1
        changed = true
      elseif t - e.since >= bounds.idle_seconds then
        drop_session(sid)
        retire(e)
        totals.expired = totals.expired + 1
        changed = true
      end
    end
    for name, list in pairs(pool) do
      for i = #list, 1, -1 do
        local e = list[i]
        if not e.ch:alive() then
          table.remove(list, i)
          retire(e)
          totals.died = totals.died + 1
          local w = wants[name]
          if w then
            w.next_at = t + w.backoff
            w.backoff = math.min(w.backoff * 2, M.BACKOFF_MAX)
          end
          changed = true
        end
      end
    end
    for name, w in pairs(wants) do
      if w.want > #(pool[name] or {}) and not w.filling and t >= (w.next_at or 0) then
        fill_agent(name)
      end
    end
    if changed then publish() end
    if n_sessions == 0 and next(wants) == nil then
      ticker = nil
      return
    end
  end
end

local function ensure_ticker()
  if not ticker and not stopping then ticker = core.task.spawn(tick) end
end

-- ------------------------------------------------------------- sessions --

--- The idle live process of session sid, taken out of the registry for
--- one turn (the caller owns it until keep or its end), when it belongs
--- to agent_name and was started with fingerprint fp. A process of that
--- session that does not match is retired (waited for: --resume must not
--- run beside it) and nil returned.
function M.take_session(sid, agent_name, fp)
  local e = sessions[sid]
  if not e then return nil end
  drop_session(sid)
  if e.agent ~= agent_name or e.fp ~= fp or not e.ch:alive() then
    retire(e, true)
    publish()
    return nil
  end
  totals.reused = totals.reused + 1
  publish()
  return e
end

--- Keeps the process of a finished, successful session turn idle for the
--- next one. entry: what take_session/take_warm gave, or nil for a
--- process the runner just started (then ch, agent_name, fp and cost
--- describe it). Evicts the least recently used session past the bound.
--- Returns false when nothing may be kept (max 0, stopping, dead child,
--- no session id): the caller ends the child as usual.
function M.keep(entry, ch, agent_name, fp, cost)
  if stopping or bounds.max <= 0 then return false end
  entry = entry or { ch = ch, agent = agent_name, fp = fp, turns = 0,
    started = core.task.time() }
  local sid = entry.ch.session_id
  if not sid or not entry.ch:alive() then return false end
  entry.kind, entry.session_id = "session", sid
  entry.since, entry.since_wall = now(), core.task.time()
  entry.turns = (entry.turns or 0) + 1
  entry.cost = cost or entry.cost
  local old = drop_session(sid)
  if old and old.ch ~= entry.ch then retire(old) end
  while n_sessions >= bounds.max do
    local lru = oldest()
    drop_session(lru.session_id)
    retire(lru)
    totals.evicted = totals.evicted + 1
  end
  sessions[sid] = entry
  n_sessions = n_sessions + 1
  totals.kept = totals.kept + 1
  ensure_ticker()
  publish()
  return true
end

-- ------------------------------------------------------------ warm pool --

--- Sets the wanted pool sizes from a config (agents with warm: N) and
--- starts what is missing. Agents no longer wanting a pool have theirs
--- retired.
function M.want(cfg)
  if stopping then return end
  M.configure(cfg.settings)
  M.cfg = cfg
  for name, w in pairs(wants) do
    local a = cfg.agents[name]
    if not a or (a.warm or 0) == 0 then
      wants[name] = nil
      for _, e in ipairs(pool[name] or {}) do retire(e) end
      pool[name] = nil
    else
      w.want = a.warm
    end
  end
  for _, name in ipairs(cfg.agent_names) do
    local a = cfg.agents[name]
    if (a.warm or 0) > 0 and not a.host then
      wants[name] = wants[name] or { want = a.warm, backoff = M.BACKOFF_MIN, next_at = 0 }
      wants[name].want = a.warm
    end
  end
  for name in pairs(wants) do M.fill_agent(name) end
  if next(wants) then ensure_ticker() end
  publish()
end

--- Starts the missing pool processes of one agent, in a task of its own
--- (one at a time: two CLIs starting together on two cores slow each
--- other down).
function M.fill_agent(name)
  local w = wants[name]
  if not w or w.filling or stopping or not M.opener then return end
  if now() < (w.next_at or 0) then return end
  w.filling = true
  core.task.spawn(function()
    local ok, err = pcall(function()
      while not stopping and wants[name] == w and #(pool[name] or {}) < w.want do
        local ch, fp = M.opener(name, M.cfg)
        if not ch then
          w.next_at = now() + w.backoff
          w.backoff = math.min(w.backoff * 2, M.BACKOFF_MAX)
          break
        end
        if stopping or wants[name] ~= w then
          retire({ ch = ch })
          break
        end
        pool[name] = pool[name] or {}
        local list = pool[name]
        list[#list + 1] = { ch = ch, agent = name, fp = fp, kind = "warm", since = now(),
          since_wall = core.task.time(), started = core.task.time(), turns = 0 }
        totals.warm_started = totals.warm_started + 1
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
    session_id = e.ch.session_id or json.null,
    idle_seconds = math.floor((t - e.since) * 10 + 0.5) / 10,
    idle_since = e.since_wall, turns = e.turns or 0, rss_kb = rss_kb(pid) or json.null },
    { "kind", "agent", "pid", "session_id", "idle_seconds", "idle_since", "turns", "rss_kb" })
end

--- Every kept process of this server with totals and bounds.
function M.stats()
  local t = now()
  local list = json.array()
  local rss = 0
  for _, e in pairs(sessions) do list[#list + 1] = row(e, t) end
  local names = {}
  for name in pairs(pool) do names[#names + 1] = name end
  table.sort(names)
  for _, name in ipairs(names) do
    for _, e in ipairs(pool[name]) do list[#list + 1] = row(e, t) end
  end
  for _, r in ipairs(list) do
    if r.rss_kb ~= json.null then rss = rss + r.rss_kb end
  end
  local warm = json.object({}, {})
  for _, name in ipairs(names) do warm[name] = #pool[name] end
  local wanted = {}
  for name, w in pairs(wants) do wanted[name] = w.want end
  return json.object({
    server_pid = core.sys.getpid(),
    processes = list,
    sessions = n_sessions,
    warm = #list - n_sessions,
    rss_kb = rss,
    bounds = json.object({ max = bounds.max, idle_seconds = bounds.idle_seconds,
      warm = json.object(wanted, {}) }, { "max", "idle_seconds", "warm" }),
    totals = json.object(totals, { "kept", "reused", "evicted", "expired", "died",
      "warm_started", "warm_taken" }),
  }, { "server_pid", "sessions", "warm", "rss_kb", "bounds", "totals", "processes" })
end

-- --------------------------------------------------------- publication --

-- The file the CLI reads: <jobs dir>/live/<server pid>.json.
local function stats_path()
  local ok, jobs = pcall(require, "ad.storage.jobs")
  if not ok then return nil end
  local dok, dir = pcall(jobs.dir)
  if not dok or not dir then return nil end
  return dir .. "/live", dir .. "/live/" .. core.sys.getpid() .. ".json"
end
M.stats_path = stats_path

local published, dirty = false, false

-- Writes the stats file soon (coalesced: one write for a burst of
-- changes); removes it when nothing is kept.
function publish()
  if dirty then return end
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
    core.fs.mkdirs(dir, 448)
    local ok = core.fs.write_atomic(path, json.encode(s), 384)
    published = ok and true or published
  end)
end

--- The stats files of every server that runs (a file of a server that is
--- gone is removed): a list of stats tables.
function M.read_all()
  local dir = stats_path()
  local out = {}
  if not dir then return out end
  local names = core.fs.listdir(dir) or {}
  table.sort(names)
  for _, n in ipairs(names) do
    local pid = math.tointeger(tonumber(n:match("^(%d+)%.json$")))
    if pid then
      local text = core.fs.read_file(dir .. "/" .. n)
      local s = text and json.decode(text)
      if type(s) == "table" and rss_kb(pid) then
        out[#out + 1] = s
      elseif not rss_kb(pid) then
        core.fs.unlink(dir .. "/" .. n) -- its server is gone
      end
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
  for sid in pairs(sessions) do all[#all + 1] = drop_session(sid) end
  for name, list in pairs(pool) do
    for _, e in ipairs(list) do all[#all + 1] = e end
    pool[name] = nil
  end
  wants = {}
  for _, e in ipairs(all) do pcall(e.ch.close, e.ch) end
  local deadline = now() + M.RETIRE_GRACE
  for _, e in ipairs(all) do
    while e.ch:alive() and now() < deadline do core.task.sleep(0.02) end
    pcall(e.ch.kill, e.ch)
    if e.ch.reap then pcall(e.ch.reap, e.ch) end
  end
  local _, path = stats_path()
  if path and published then core.fs.unlink(path) end
  return #all
end

--- Whether anything is kept or wanted (the server calls shutdown then).
function M.active()
  return n_sessions > 0 or next(pool) ~= nil or next(wants) ~= nil
end

return M
