--- The delegation tree: a span for every dispatch and one spend cap per
--- tree. Called from the runner door (ad.domain.runner.run), async
--- submission and the group operations (parallel, dialogue, `run`
--- scripts); the records go to ad.storage.traces.
---
--- A trace context is {trace_id, parent_id, cap, holders}: the tree, the
--- span a new one hangs under (nil for a root), the tree's spend cap in
--- USD (nil: none) and the spans above it that hold a budget reservation.
--- It reaches a child process through AGENT_DISPATCH_TRACE (in the claude
--- child's environment only, next to AGENT_DISPATCH_DEPTH), so an
--- agent-dispatch server started inside that child's Claude Code session
--- joins the same tree. A process reads the variable once at start and
--- removes it from its own environment: hooks, tool files and any other
--- process it starts never see it. A process without it starts a new
--- trace for every top-level call.
---
--- The cap: before a child is spawned the tree's ledger (cross-process,
--- locked) must have something left - the cap minus what was spent minus
--- what other running dispatches reserved (a dispatch's own ancestors'
--- reservations are what it is spending from, so they do not count) - or
--- the dispatch is refused with error_type "budget". The child is started
--- with --max-budget-usd = min(its own cap, what is left), which is
--- reserved until its result settles the ledger with the cost it reports.
local core = require "ad.core"
local json = require "ad.infra.json"
local util = require "ad.infra.util"
local store = require "ad.storage.traces"

local M = {}

M.ENV = "AGENT_DISPATCH_TRACE"

--- The entry of a child's environment that carries its context (value:
--- M.env_value's), as the runner passes it and a job's record keeps it
--- (process.mark: ad.storage.jobs finds the rest of a group by it).
function M.env_entry(value)
  return M.ENV .. "=" .. value
end

--- Reserved ancestors carried to a child at most (deeper ones are
--- dropped, oldest first; depth is bounded by max_dispatch_depth anyway).
M.MAX_HOLDERS = 16

--- Left in the tree below this many dollars counts as nothing left.
M.EPSILON = 1e-6

-- Shared, never changed: a context without any allocates none (every
-- byte a dispatch allocates costs collector work later).
local NO_HOLDERS = {}

-- What this process inherited (read once, then removed from environ).
local inherited, read = nil, false

local function parse(raw)
  if type(raw) ~= "string" then return nil end
  local t, p, cap, holders = raw:match("^(%x+):(%x*):([^:]*):([%x,]*)$")
  if not (t and store.valid(t)) or (p ~= "" and #p ~= 16) then return nil end
  local ctx = { trace_id = t, parent_id = p ~= "" and p or nil, holders = {} }
  local c = tonumber(cap)
  if c and c > 0 and c < math.huge then ctx.cap = c end
  for h in holders:gmatch("%x+") do
    if #h == 16 then ctx.holders[#ctx.holders + 1] = h end
  end
  return ctx
end

-- The context file named by AGENT_DISPATCH_TRACE_FILE (ad.domain.trace_file):
-- this process runs inside a kept live process, whose server rewrites the
-- file for each request (each turn) it hands that process.
local ctx_file

--- The context this process was started in, or nil: the one in its
--- context file when AGENT_DISPATCH_TRACE_FILE names one that is trusted
--- (read again on each call: a kept process serves one turn after the
--- other), else AGENT_DISPATCH_TRACE. The first call removes both
--- variables from the environment.
function M.inherited()
  if not read then
    read = true
    local raw = os.getenv(M.ENV)
    if raw then
      core.sys.unsetenv(M.ENV)
      inherited = parse(raw)
    end
    local tf = require "ad.domain.trace_file"
    ctx_file = os.getenv(tf.ENV)
    if ctx_file then core.sys.unsetenv(tf.ENV) end
  end
  if ctx_file then
    local ctx = parse(require("ad.domain.trace_file").read(ctx_file))
    if ctx then return ctx end
  end
  return inherited
end

--- The context of a whole process (the `run` command: every dispatch of
--- its script hangs under the script's span), or nil.
M.process = nil

local function lower(a, b)
  if a and b then return math.min(a, b) end
  return a or b
end

-- A positive number, or nil.
--- A spend cap as a setting or argument gives it: a positive finite
--- number, else nil (no cap).
function M.cap_of(v)
  v = tonumber(v)
  return (v and v > 0 and v < math.huge) and v or nil
end
local cap_of = M.cap_of

--- The context a top-level call starts in: the process's own (a `run`
--- script), the inherited one, or a new tree. The cap is the lowest of the
--- inherited one, settings.tree_budget_usd and the call's tree_budget_usd.
function M.root(settings, tree_budget)
  local base = M.process or M.inherited()
  local cap = lower(cap_of(settings and settings.tree_budget_usd), cap_of(tree_budget))
  if base then
    return { trace_id = base.trace_id, parent_id = base.parent_id,
      cap = lower(base.cap, cap), holders = base.holders }
  end
  return { trace_id = M.new_trace_id(), cap = cap, holders = NO_HOLDERS }
end

--- The context of what a span starts (its children).
function M.under(ctx, span)
  local holders = ctx.holders or NO_HOLDERS
  if span.reserved then
    holders = table.move(holders, 1, #holders, 1, {})
    holders[#holders + 1] = span.span_id
    while #holders > M.MAX_HOLDERS do table.remove(holders, 1) end
  end
  return { trace_id = ctx.trace_id, parent_id = span.span_id, cap = ctx.cap, holders = holders }
end

--- The value of AGENT_DISPATCH_TRACE for the child of span.
function M.env_value(ctx, span)
  local holders = span.reserved and M.under(ctx, span).holders or ctx.holders or NO_HOLDERS
  return ctx.trace_id .. ":" .. span.span_id .. ":" ..
    (ctx.cap and string.format("%.17g", ctx.cap) or "") .. ":" .. table.concat(holders, ",")
end

-- The dispatch depth of this process (it does not change while it
-- runs): looked up once, not for every span.
local my_depth
local function depth()
  if not my_depth then my_depth = require("ad.domain.runner").depth() end
  return my_depth
end

local now = core.trace.now

-- A write that fails (a full disk, a refused directory) never fails the
-- dispatch it describes: it is reported once per process. With status the
-- record is the span's end (and r the result it ended with): see
-- ad.storage.traces.append.
local warned = false
--- A span whose start is written only when something under it is written
--- first (a `run` script's: a script that dispatches nothing records no
--- tree), or nil. Its owner ends it only if it was written.
M.deferred = nil
function M.write(span, status, r)
  local d = M.deferred
  if d and d ~= span then
    M.deferred = nil
    M.write(d)
  end
  local ok, err = pcall(store.append, span, depth(), status, r)
  if not ok and not warned then
    warned = true
    io.stderr:write("agent-dispatch: warning: the trace could not be recorded (",
      tostring(type(err) == "table" and err.message or err), ")\n")
  end
end

--- A span record under ctx (nothing written). It holds what the span
--- started with (trace_id, span_id, parent_id, kind, agent, task, caller,
--- goal, start, job_id; nil ones absent) and its status; the store writes
--- every other field of a record (ad.storage.traces.KEYS) as a new span
--- has it, and an end from the result it ended with (M.finish), without a
--- table of them per span. M.full is the whole record.
function M.record(ctx, fields)
  return {
    trace_id = ctx.trace_id, span_id = fields.span_id or M.new_id(),
    parent_id = ctx.parent_id, kind = fields.kind, agent = fields.agent,
    task = fields.task, caller = fields.caller, goal = fields.goal,
    start = fields.start or now(), status = "running", job_id = fields.job_id,
  }
end

--- The whole record of span as it would be written now (every field of
--- ad.storage.traces.KEYS, null for none; the task cut to 200 code
--- points): what another process needs to end it (ad.domain.keeper).
function M.full(span)
  local s = json.decode(store.line(span, depth()))
  if type(s.denied_tools) ~= "table" or #s.denied_tools == 0 then s.denied_tools = json.array() end
  return s
end

--- Starts a span under ctx (kind, agent, task, caller, goal, job_id;
--- span_id and start when they were chosen before) and writes its start,
--- unless adopted: its start was written already (an async job's worker
--- ends the span its submission started).
function M.start(ctx, fields, adopted)
  local span = M.record(ctx, fields)
  if not adopted then M.write(span) end
  return span
end

-- Span and trace ids: a random prefix per process and a counter (a
-- random id per span costs as much as the rest of its record). Span ids
-- are unique within a tree as long as no two of its processes draw the
-- same 32-bit prefix; trace ids carry 96 random bits per process.
-- (core.trace: one random read per process, one counter for both.)

--- A new span id (16 hex digits).
M.new_id = core.trace.span_id

--- A new trace id (32 hex digits).
M.new_trace_id = core.trace.trace_id

--- Seconds a dispatch's child runs before the start record of its span
--- is written. A dispatch that ends sooner is recorded once, at its end
--- (readers keep a span's last record): most dispatches of a tree write
--- one line, not two.
M.START_DELAY = 1

-- Spans whose child runs and whose start record is not written yet, in
-- the order their children started, with the monotonic time each started
-- at: one timer for all of them (not one per span), armed for the oldest,
-- so a dispatch adds two array entries and no handle or closure. A span
-- that ended meanwhile (status no longer "running") is dropped when the
-- timer fires. The armed timer does not keep a process from exiting.
local waiting, since, timer = {}, {}, nil

local function due()
  timer = nil
  -- (the loop's timers count whole milliseconds from the start of its
  -- iteration: a timer may fire a little before its time by this clock)
  local t = core.task.now() + 0.002
  local w, s = waiting, since
  waiting, since = {}, {}
  for i = 1, #w do
    local span = w[i]
    if span.status == "running" then
      if t - s[i] >= M.START_DELAY then
        span.start_timer = nil
        M.write(span)
      else
        waiting[#waiting + 1], since[#since + 1] = span, s[i]
      end
    end
  end
  if waiting[1] then timer = core.task.after(since[1] + M.START_DELAY - t, due) end
end

--- The child of a dispatch span started: its start record is written if
--- it still runs after START_DELAY (one timer shared by every span).
--- Nothing for a span whose start was written already (adopted: an async
--- job's submission wrote it).
function M.started(span)
  if span.adopted or span.start_timer then return end
  span.start_timer = true
  local n = #waiting + 1
  waiting[n], since[n] = span, core.task.now()
  if not timer then timer = core.task.after(M.START_DELAY, due) end
end

--- Ends a span: status ("ok", "error", "cancelled", "refused") and what
--- the result r says (cost, session, turns, denied tools, cached), in the
--- record written (ad.storage.traces.append); the span keeps its status.
--- defer, optional: how the record is written (ad.domain.after_reply's
--- defer: after the reply; the span's end is the time of this call).
function M.finish(span, status, r, defer)
  -- A handed-off call's span left to the keeper is ended there, with
  -- the real result (ad.domain.keeper), not here as the server exits.
  if span.left then return span end
  span.start_timer = nil
  span.status = status
  span.reserved, span.adopted = nil, nil
  -- (its duration and what r says are written, not kept on it)
  if defer then
    span["end"] = now()
    defer(M.write, span, status, r)
  else
    M.write(span, status, r)
  end
  return span
end

--- A sync dispatch handed off to job job_id (handoff_after_seconds): its
--- span goes on as the job's, kind "handoff", recorded at once so that
--- the job id finds the trace while the job runs.
function M.handoff(span, job_id)
  span.kind, span.job_id = "handoff", job_id
  M.write(span)
end

--- A one-record span: something that did not run a child (a cache hit,
--- a refusal). defer: as M.finish's.
function M.instant(ctx, fields, status, r, defer)
  local span = M.record(ctx, fields)
  return M.finish(span, status, r, defer)
end

--- The status of a span for a DispatchResult.
function M.status_of(r)
  if r.success then return "ok" end
  return "error"
end

-- ---- the spend cap ----------------------------------------------------------

local function money(x) return string.format("$%.2f", x) end

-- "alpha $0.60, beta $0.30" (the five biggest spenders).
local function spenders(led)
  local list = {}
  for agent, usd in pairs(led.spenders) do
    if type(usd) == "number" then list[#list + 1] = { agent, usd } end
  end
  table.sort(list, function(a, b) return a[2] > b[2] or (a[2] == b[2] and a[1] < b[1]) end)
  local parts = {}
  for i = 1, math.min(5, #list) do parts[i] = list[i][1] .. " " .. money(list[i][2]) end
  if #list > 5 then parts[#parts + 1] = (#list - 5) .. " more" end
  return #parts > 0 and table.concat(parts, ", ") or "nothing settled yet"
end

--- Reserves the tree budget of a dispatch about to spawn. own is the
--- dispatch's own cap (or nil). Returns the amount it may spend (its
--- --max-budget-usd), or nil and {message, hint} when nothing is left.
function M.reserve(ctx, span, agent, own)
  local holder = {}
  for _, h in ipairs(ctx.holders or {}) do holder[h] = true end
  return store.with_ledger(ctx.trace_id, function(led)
    -- The tree's cap is the lowest one ever recorded: a child that raised
    -- the cap in the context it passes on (its environment) stays under
    -- the one its tree was given.
    led.cap = lower(tonumber(led.cap), ctx.cap)
    local cap = led.cap
    local others, running = 0, 0
    for id, usd in pairs(led.reserved) do
      if not holder[id] and type(usd) == "number" then
        others, running = others + usd, running + 1
      end
    end
    local left = cap - led.spent - others
    if left <= M.EPSILON then
      local msg = "Tree budget exhausted: the delegation tree " .. ctx.trace_id ..
        " may spend " .. money(cap) .. " in all; " .. money(led.spent) ..
        " spent (" .. spenders(led) .. ")" ..
        (running > 0 and (", " .. money(others) .. " reserved by " .. running ..
          " running dispatch(es)") or "") .. ". Agent '" .. agent .. "' was not started."
      local hint = "See where it went: agent-dispatch trace " .. ctx.trace_id ..
        " (or the dispatch_trace tool). Raise tree_budget_usd for a bigger tree."
      return false, nil, { msg, hint }
    end
    local amount = own and math.min(own, left) or left
    led.reserved[span.span_id] = amount
    return true, amount
  end)
end

--- Settles a reservation with what the dispatch cost (ran: its child ran).
function M.settle(ctx, span, agent, cost, ran)
  store.with_ledger(ctx.trace_id, function(led)
    local held = tonumber(led.reserved[span.span_id])
    led.reserved[span.span_id] = nil
    local c = type(cost) == "number" and cost > 0 and cost or 0
    -- A child that ran and reported no cost (timed out, killed, cancelled)
    -- may have spent all it was allowed: it is charged its reservation.
    -- Charging nothing would hand the same money to the next child.
    if ran and type(cost) ~= "number" and held and held > 0 then c = held end
    led.spent = led.spent + c
    led.spenders[agent] = (tonumber(led.spenders[agent]) or 0) + c
    return true
  end)
end

-- ---- the read side ------------------------------------------------------------

--- The trace an id names: a trace id, or the id of an async job (the
--- trace holding its span). nil: the most recent trace. Returns the trace
--- id (and, when they were read to find it, nil and its spans), or nil
--- and a message.
function M.resolve(id)
  if id == nil or id == "" then
    local ids, spans = store.recent(1)
    if not ids[1] then return nil, "No traces recorded yet." end
    return ids[1], nil, spans[ids[1]]
  end
  if not store.valid(id) then
    return nil, "Invalid trace or job id: " .. util.repr(id) .. " (expected 32 hex digits)"
  end
  local spans = store.read(id)
  if spans then return id, nil, spans end
  local found = store.find_job(id)
  if found then return found end
  return nil, "No trace " .. id .. " (and no job with that id in a recorded trace)."
end

--- What a trace adds up to: {trace_id, spans (count), start, end,
--- duration_ms, total_cost_usd, status, failed, root (kind, agent, task)}.
function M.summary(id, spans)
  local t0, t1, cost, failed, running = math.huge, -math.huge, 0, 0, 0
  local root
  for _, s in ipairs(spans) do
    if type(s.start) == "number" then
      t0 = math.min(t0, s.start)
      t1 = math.max(t1, type(s["end"]) == "number" and s["end"] or s.start)
    end
    if type(s.cost_usd) == "number" and s.cached ~= true then cost = cost + s.cost_usd end
    if s.status == "error" or s.status == "refused" or s.status == "cancelled" then failed = failed + 1 end
    if s.status == "running" then running = running + 1 end
    if not root and (s.parent_id == nil or s.parent_id == json.null) then root = s end
  end
  root = root or spans[1] or {}
  if t0 == math.huge then t0, t1 = 0, 0 end
  return json.object({ trace_id = id, spans = #spans, start = t0, ["end"] = t1,
    duration_ms = math.floor((t1 - t0) * 1000 + 0.5), total_cost_usd = util.round(cost, 6),
    status = running > 0 and "running" or (failed > 0 and "error" or "ok"), failed = failed,
    kind = root.kind, agent = type(root.agent) == "string" and root.agent or nil,
    task = type(root.task) == "string" and util.cut(root.task, 80) or nil },
    { "trace_id", "spans", "start", "end", "duration_ms", "total_cost_usd", "status",
      "failed", "kind", "agent", "task" })
end

--- One trace for a caller: {trace_id, summary, text, spans} (nil and a
--- message when there is none). opts: width, color (the text tree).
function M.show(id, opts)
  local tid, err, read = M.resolve(id)
  if not tid then return nil, err end
  local spans = read or store.read(tid) or {}
  local view = require "ad.domain.trace_view"
  local root = view.tree(spans)
  return { trace_id = tid, summary = M.summary(tid, spans), spans = spans, root = root,
    text = view.text(root, { width = opts and opts.width or 120, color = opts and opts.color }) }
end

return M
