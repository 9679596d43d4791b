--- The one door of every dispatch (run), and running one: preconditions,
--- the claude command line, the child process under the shared limiter.
--- Requests come from ad.domain.request; what the child wrote is read by
--- ad.domain.claude; the result is an ad.domain.result DispatchResult.
---
--- Two output modes share one code path: "json" (one result object at the
--- end) and "stream" (stream-json lines; assistant lines become progress).
--- In both, a result object that arrived outranks the timeout flag, the
--- child's whole process group goes away when it exits or times out, and
--- every failure becomes a DispatchResult with success=false, error and
--- error_type - never an exception. Cancellation is the one exception:
--- a cancelled task raises errors.new("cancelled", ...) after the child's
--- group has been signalled and reaped.
---
--- Over 500 lines: the one door (hooks, cache, the span, the dispatch's
--- line) and the run of one child; the request, the child's command line,
--- its output, the slot and the live transport are modules of their own
--- already (request, cmdline, claude, slot, live_run).
local core = require "ad.core"
local json = require "ad.infra.json"
local util = require "ad.infra.util"
local getenv = util.getenv
local errors = require "ad.infra.errors"
local prompt = require "ad.domain.prompt"
local result = require "ad.domain.result"
local claude = require "ad.domain.claude"
local request = require "ad.domain.request"
local trace = require "ad.domain.trace"
local trace_file = require "ad.domain.trace_file"
local remote = require "ad.domain.remote"
local transport = require "ad.domain.transport"
local channel = require "ad.domain.channel"
local live_run = require "ad.domain.live_run"
local cmdline = require "ad.domain.cmdline"
local slot_gate = require "ad.domain.slot"
local after_reply = require "ad.domain.after_reply"
local state = require "ad.storage.state"
local config = require "ad.storage.config"
local kept = util.lazy "ad.domain.live"
local marks = util.lazy "ad.storage.session_marks"

local M = {}

--- Environment variables of a calling Claude Code session that never reach
--- a child: the child is a separate, top-level session in another project
--- (some CLI builds refuse to start when CLAUDECODE says they are nested,
--- and a caller's session id must not leak into the child's bookkeeping).
--- Recursion is bounded by AGENT_DISPATCH_DEPTH instead. Claude Code
--- 2.1.328 gives its MCP servers more of its session than the three
--- documented variables: its project directory (which a child would keep
--- and hand to its own hooks and tools), the ids of the launching session,
--- and a messaging socket and token of that session. None of that belongs
--- to an agent working in another project. User settings such as
--- CLAUDE_CODE_USE_BEDROCK or ANTHROPIC_* pass through.
M.STRIPPED_ENV = { CLAUDECODE = true, CLAUDE_CODE_SESSION_ID = true,
  CLAUDE_CODE_ENTRYPOINT = true, CLAUDE_PROJECT_DIR = true,
  CLAUDE_CODE_LAUNCHED_BY_SESSION_IDS = true, CLAUDE_CODE_CHILD_NOTES_DIR = true,
  CLAUDE_CODE_MESSAGING_SOCKET = true, CLAUDE_CODE_MESSAGING_TOKEN = true,
  AGENT_DISPATCH_DEPTH = true, AGENT_DISPATCH_TRACE = true, AGENT_DISPATCH_TRACE_FILE = true }

M.result = result.new
M.failure = result.failure
M.RESULT_KEYS = result.KEYS
M.parse_json_reply = claude.parse_json_reply

--- Current recursion depth from our own environment (unset or garbage: 0).
function M.depth()
  local raw = getenv("AGENT_DISPATCH_DEPTH")
  if raw == nil or raw == "" then return 0 end
  local v = tonumber(raw)
  -- A depth past any bound is deep, not shallow: 2^70 (no integer) or
  -- 1e999 must trip the guard, not restart the count at 0.
  if v and v >= M.DEEPEST then return M.DEEPEST end
  local n = math.tointeger(v)
  if not n or n < 0 then
    io.stderr:write("agent-dispatch: warning: AGENT_DISPATCH_DEPTH=" .. raw ..
      " is not a depth (a whole number from 0); treating it as 0\n")
    return 0
  end
  return n
end

--- The depth any larger AGENT_DISPATCH_DEPTH counts as (far past any
--- max_depth; a child's depth + 1 stays an integer).
M.DEEPEST = 1000000

--- The claude binary: its path, and when it was found on PATH its
--- core.fs.file_id (the stat that found it tells its identity too, which
--- ad.domain.transport keys its answer on: one stat per dispatch, not two).
function M.claude_path()
  local override = getenv("AGENT_DISPATCH_CLAUDE")
  return core.sys.which(override ~= nil and override ~= "" and override or "claude", true)
end

-- The process environment never changes after start: filter it once, and
-- build a child's environment once per depth (callers only read it).
local inherited
local env_at = {}

--- The child's environment: ours filtered, its depth, and (trace_env) the
--- trace context it runs in (ad.domain.trace), which only a claude child
--- gets. Callers only read it.
function M.child_env(depth, trace_env)
  local env = env_at[depth]
  if env then
    if not trace_env then return env end
    -- One table of the final size, made at once (the trace variable
    -- first; the order of a child's environment does not matter), not
    -- grown entry by entry: this runs for every dispatch.
    if #env <= 1000 then return { trace.env_entry(trace_env), table.unpack(env) } end
    env = table.move(env, 1, #env, 1, {})
    env[#env + 1] = trace.env_entry(trace_env)
    return env
  end
  if not inherited then
    inherited = {}
    for _, kv in ipairs(core.sys.environ()) do
      local k = kv:match("^([^=]*)=")
      if k and not M.STRIPPED_ENV[k] then inherited[#inherited + 1] = kv end
    end
  end
  env = table.move(inherited, 1, #inherited, 1, {})
  env[#env + 1] = "AGENT_DISPATCH_DEPTH=" .. (depth + 1)
  env_at[depth] = env
  if trace_env then return M.child_env(depth, trace_env) end
  return env
end

-- The start of the variable a claude child gets its trace context in.

--- One child run: take a concurrency slot, spawn, collect stdout lines
--- (stream mode: decode each as it comes, report progress, keep only the
--- result event), wait. Returns what claude.interpret reads: {lines=,
--- payload=, info=, truncated=, last=} or {spawn_error = {msg, code}};
--- raises the cancelled error after the child is gone. The prompt goes to
--- the child's stdin. A non-stream run keeps at most M.MAX_OUTPUT bytes of
--- stdout lines; past that only the last line (where the CLI's result
--- object is), as last.
local function run_child(argv, text, env, timeout, req, cwd, env_add)
  local slot = slot_gate.take(req)
  local stream, on_progress = req.stream, req.on_progress
  local cap = M.MAX_OUTPUT
  -- With on_spawn the child waits at its start gate (ad.domain.slot).
  -- A remote agent's ssh keeps its stdin open until the end: when it
  -- closes, the far side ends the remote process group (ad.domain.remote).
  local p, msg, code = core.proc.spawn{ argv = argv, cwd = cwd, env = env, env_add = env_add,
    timeout = timeout, grace = req.agent.host and remote.KILL_GRACE or M.kill_grace,
    drain = M.drain, slot = slot,
    stdin = text, stdin_keep = req.agent.host ~= nil, gated = req.on_spawn ~= nil,
    keeper = req.keeper,
    max_line = cap, max_output = (not stream) and cap or nil }
  if not p then
    slot:release()
    return { spawn_error = { msg, code } }
  end
  slot_gate.start(req, p, p:pid(), argv)
  local out = { lines = {} }
  -- Redact hooks clean each line at its source, before any consumer (a
  -- job's stored tail, MCP notifications, the run display) sees it.
  local plugins = package.loaded["ad.domain.plugins"]
  local filter = on_progress and plugins and plugins.progress_filter()
  local cancelled = false
  local on_output = req.on_output
  -- A remote child's answer is in: ssh's stdin is closed at once, so the
  -- far side ends what claude left behind there (ad.domain.remote's
  -- watcher), which may hold the session's output open and with it ssh.
  local remote_open = req.agent.host ~= nil
  while true do
    local line, err = p:read_line()
    if line == nil then
      cancelled = (err == "cancelled")
      break
    end
    if on_output then on_output(line) end
    if remote_open and line:find('"type":"result"', 1, true) then
      remote_open = false
      p:close_stdin()
    end
    if stream then
      local kind, payload, progress = claude.event(line)
      if kind == "result" then
        out.payload = payload
      elseif kind == "assistant" and on_progress then
        for _, t in ipairs(progress) do on_progress(filter and filter(t) or t) end
      end
    else
      out.lines[#out.lines + 1] = line
    end
  end
  if cancelled or core.task.cancelled() then
    p:kill()
    p:wait()      -- the slot goes back when the child has been reaped
    p:close()
    error(errors.new("cancelled", "cancelled"), 0)
  end
  local info = p:wait()
  if not info then -- cancelled while waiting for the exit
    p:kill()
    p:wait()
    p:close()
    error(errors.new("cancelled", "cancelled"), 0)
  end
  M.mark_truncated(out, info, stream)
  out.info = info
  p:close()
  return out
end

--- Marks out (lines, payload) truncated when the child's output went past
--- M.MAX_OUTPUT: past the cap a non-stream run's process object kept only
--- the last line, delivered at the end (out.last); a line longer than the
--- cap was skipped whole, in every mode (it may have been the result).
function M.mark_truncated(out, info, stream)
  if (not stream and info.truncated) or (info.skipped_lines > 0 and not out.payload) then
    out.truncated = true
    -- (the last line read: past the cap the one delivered at the end; else
    -- what followed a skipped over-long line, which may be the result)
    if not stream then out.last = table.remove(out.lines) end
  end
end

--- Bytes of stdout kept from a non-stream child (its JSON result is one
--- line well below this; 200 MB of stray output must not become 200 MB
--- of server memory). Stream runs keep no output but the result line.
M.MAX_OUTPUT = 8 * 1024 * 1024

M.kill_grace = 2
M.drain = 2

--- An optional observer of every dispatch in this process (the `run`
--- command's progress display): {start(name, req) -> handle (queued),
--- running(handle) (it got its concurrency slot; optional),
--- progress(handle, line), finish(handle, result)}.
M.observer = nil

--- Runs the claude CLI for a request (hooks, cache and observer are the
--- caller's): preconditions, the command line, one child (two when an old
--- CLI refuses --session-id), the DispatchResult.
local function execute(req)
  local name, settings = req.agent_name, req.settings
  local depth = M.depth()
  if depth >= settings.max_dispatch_depth then
    return result.failure(name, "recursion", "Dispatch depth " .. depth .. " >= max " ..
      settings.max_dispatch_depth .. ": an agent is probably dispatching back " ..
      "to its caller (depth " .. depth .. " >= max " .. settings.max_dispatch_depth ..
      "). Raise settings.max_dispatch_depth in agents.yaml if this nesting is intended.")
  end
  local host = req.agent.host
  local path, ssh, path_id
  if host then
    -- claude runs on the other host (found on its PATH there); here
    -- runs ssh, in no particular directory.
    path = remote.CLAUDE
    local refusal
    ssh, refusal = remote.local_command(name, settings)
    if not ssh then return refusal end
  else
    path, path_id = M.claude_path()
    if not path then
      local override = getenv("AGENT_DISPATCH_CLAUDE")
      if override ~= nil and override ~= "" then
        return result.failure(name, "not_found", "AGENT_DISPATCH_CLAUDE=" .. override ..
          " does not name an executable file (unset it to use the claude on PATH)")
      end
      return result.failure(name, "not_found", "Claude CLI not found in PATH. Install " ..
        "it: https://docs.anthropic.com/en/docs/claude-code (npm install -g " ..
        "@anthropic-ai/claude-code)")
    end
    if core.project.health(req.agent.directory) ~= true then
      return result.failure(name, "not_found", "Directory does not exist: " .. req.agent.directory)
    end
  end
  local eff = request.effective(req)
  local text = prompt.build(req)
  local resume = req.session_id
  local fresh = not resume and core.text.uuid4() or nil
  -- The session's last child may still be ending after its answer.
  if resume then live_run.wait_session(resume) end
  -- The environment every child at this depth shares; the trace context
  -- of this one goes next to it (env_add: no copy of the list per child).
  -- A kept process gets its context through a file (ad.domain.live).
  local env = M.child_env(depth)
  local env_add = req.trace_env and trace.env_entry(req.trace_env)
  -- live: the CLI's control channel (ad.domain.transport, ad.domain.live_run)
  -- The transport check counts in the dispatch's timeout (a host that is
  -- slow to answer it must not add its wait to every dispatch).
  local checked_at = core.task.now()
  local mode, unreachable = transport.choose(settings, req.agent, not host and path or nil, env,
    path_id, eff.timeout)
  if unreachable then
    return result.failure(name, "remote", "ssh to " .. host .. " failed: " .. unreachable)
  end
  local timeout = eff.timeout
  if timeout then
    local spent = core.task.now() - checked_at
    if spent >= timeout then
      return result.failure(name, "timeout", "Agent '" .. name .. "' timed out after " ..
        util.num(timeout) .. "s waiting for its " .. (host and ("host " .. host) or "claude CLI") ..
        " to answer the transport check (claude --help); nothing ran, no session was started.")
    end
    if spent > 0.5 then timeout = timeout - spent end
  end
  local live = mode == "live"
  -- A kept live process (a session's, the warm pool's), or a session turn
  -- whose process is kept afterwards: ad.domain.live.
  local keep = live and not ssh and kept.wanted(req, eff.budget)
  if req.on_channel then req.on_channel(nil, live and "live" or "oneshot") end
  while true do
    local argv, refusal = cmdline.argv(req, path, resume, fresh, eff, live)
    if not argv then return result.failure(name, "cli_error", refusal) end
    local cwd, input = req.agent.directory, text
    -- The session's turn mark as this turn begins: a kept process that
    -- did not make it missed a turn run elsewhere (ad.storage.session_marks).
    local mark = resume and marks.turn(resume)
    local kept_run = keep and kept.run{ argv = argv, env = env, cwd = cwd, text = text, req = req,
      timeout = timeout, budget = eff.budget, resume = resume, mark = mark, fresh = fresh,
      grace = M.kill_grace, drain = M.drain, cap = M.MAX_OUTPUT,
      interrupt_grace = settings.interrupt_grace_seconds } or nil
    if kept_run then
      kept_run.timeout, kept_run.budget, kept_run.max_output = eff.timeout, eff.budget, M.MAX_OUTPUT
      kept_run.budget_by_tree = eff.by_tree
      return claude.interpret(kept_run, req) or result.failure(name, "cli_error",
        "claude refused --session-id")
    end
    keep = false -- nothing kept applied: the usual child
    if resume then marks.new_turn(resume) end
    if ssh then
      argv, input = remote.command{ ssh = ssh.path, control_dir = ssh.control_dir,
        connect_timeout = ssh.connect_timeout, host = host, directory = req.agent.directory,
        prompt = text, live = live, env = remote.forwarded(M.child_env(depth, req.trace_env)),
        claude_argv = argv }
      cwd = nil
    end
    local run
    if live then
      run = live_run.run(argv, text, cmdline.env(env), timeout, req, cwd, { cap = M.MAX_OUTPUT,
        grace = host and remote.KILL_GRACE or M.kill_grace, drain = M.drain,
        interrupt_grace = settings.interrupt_grace_seconds, session_id = resume or fresh,
        env_add = env_add })
    else
      run = run_child(argv, input, cmdline.env(env), timeout, req, cwd, env_add)
    end
    run.session_id, run.fresh = resume or fresh, fresh ~= nil
    run.timeout, run.budget, run.max_output = eff.timeout, eff.budget, M.MAX_OUTPUT
    run.budget_by_tree = eff.by_tree
    local r = ssh and remote.failure(run, req) or claude.interpret(run, req)
    if r then return r end
    io.stderr:write("agent-dispatch: warning: this claude CLI does not know " ..
      "--session-id; retrying without it (a timed-out dispatch will not be resumable)\n")
    fresh = nil
  end
end

-- Turns of one session run one at a time in this process: a turn that
-- comes while another of its session runs waits for it (in order), so a
-- kept live process and a `claude --resume` never work on one transcript
-- at once. session id -> the waiting turns' events (present: one runs).
local session_turns = {}

local function turn_begin(sid)
  local q = session_turns[sid]
  if not q then
    session_turns[sid] = {}
    return
  end
  local ev = core.task.event()
  q[#q + 1] = ev
  local got, why = ev:wait()
  if got == nil then
    for i, e in ipairs(q) do if e == ev then table.remove(q, i) break end end
    error(require("ad.infra.errors").new("cancelled", tostring(why or "cancelled")), 0)
  end
end

local function turn_end(sid)
  local q = session_turns[sid]
  if not q then return end
  local next_turn = table.remove(q, 1)
  if next_turn then next_turn:set(true) else session_turns[sid] = nil end
end

-- A turn of session sid handed off to a job that another process (a
-- keeper, another server) still runs: this turn waits for it to end (at
-- most timeout seconds), as it would for a turn of this process. The
-- hand-off marks the session (ad.storage.session_marks, ad.domain.keeper):
-- a resume reads one small file, no record unless a hand-off is marked.
local function wait_foreign_turn(sid, timeout)
  local id = marks.handed(sid)
  if not id then return end
  local jobs = require "ad.storage.jobs"
  local ok, rec = pcall(jobs.get, id)
  if not ok then return end
  if rec and rec.session_id == sid and not jobs.TERMINAL[rec.status] and
      not require("ad.domain.async").runs_here(id) and jobs.process_alive(rec) then
    local r = require("ad.domain.async").wait(id, timeout)
    if r and not jobs.TERMINAL[r.status] then
      return "The session " .. sid .. " is still in use by job " .. id ..
        " (a turn handed off earlier, still running after " .. util.num(timeout) ..
        " s); wait for it with dispatch_wait, then continue the session."
    end
  end
  marks.unhand(sid, id)
end

local function execute_turn(req)
  local sid = req.session_id
  if not sid then return execute(req) end
  turn_begin(sid)
  local ok, res = pcall(function()
    local busy = wait_foreign_turn(sid, request.effective(req).timeout or 300)
    if busy then return result.failure(req.agent_name, "cli_error", busy, { session_id = sid }) end
    return execute(req)
  end)
  turn_end(sid)
  if not ok then error(res, 0) end
  return res
end

local function observed(req)
  local obs = M.observer
  if not obs then return execute_turn(req) end
  -- The first dispatch of a CLI binary probes its transport (a yield):
  -- done before the observer hears of the dispatch, which it shows as
  -- queued only while every slot is taken.
  if not req.agent.host and req.settings.transport == "auto" then
    local path, id = M.claude_path()
    if path then pcall(transport.has_channel, path, M.child_env(M.depth()), id) end
  end
  local h = obs.start(req.agent_name, req)
  local r = util.copy(req)
  -- A dispatch waits for a concurrency slot first: the observer hears when
  -- it got one (queued until then).
  local inner_slot = req.on_slot
  r.on_slot = function()
    if obs.running then obs.running(h) end
    if inner_slot then return inner_slot() end
  end
  -- Progress lines exist only in stream mode: observe them there; a plain
  -- dispatch still reports its start and end.
  if req.stream then
    local inner = req.on_progress
    r.on_progress = function(line)
      obs.progress(h, line)
      if inner then inner(line) end
    end
  end
  local ok, res = pcall(execute_turn, r)
  obs.finish(h, ok and res or nil)
  if not ok then error(res, 0) end
  return res
end

--- Settles the tree budget reserved for span (in the tree of ctx: its
--- trace_id) with what result r (nil: none) cost. The server's runner and
--- the keeper's job runner settle through here. Never raises.
function M.settle_tree(ctx, span, agent, r, ran)
  local settled, err = pcall(trace.settle, ctx, span, agent, r and r.cost_usd or nil, ran)
  if not settled then
    io.stderr:write("agent-dispatch: warning: the tree budget of trace ", ctx.trace_id,
      " could not be settled (", tostring(type(err) == "table" and err.message or err), ")\n")
  end
end

-- The dispatch of a span: the tree budget reserved before the child can
-- spawn (refused when nothing is left), the trace context handed to the
-- child, the ledger settled and the span ended with the result. The
-- request (built for this one call) carries what the child needs
-- (tree_left, trace_env, on_started) while it runs: no copy per dispatch.
--
-- The "Dispatching to ..." line of a dispatch (its stderr line and the
-- call's log notification) is said once its child has been spawned: the
-- client's wait holds only what decides what is spawned. span.announce is
-- the request it names until then. A dispatch that ends, fails or is
-- refused without a child says it before it returns or raises, one that
-- must wait for a concurrency slot before the wait (a hand-off to a job may
-- answer the call meanwhile: ad.domain.slot), and a call answered early
-- (handed off to a job) before that answer: the line is always said, once,
-- before the call's reply.
function M.announce(span)
  local req = span.announce
  if not req then return end
  span.announce = nil
  local log = req.log
  if req.session_id then
    log("info", "Dispatching to " .. req.agent_name .. " (resuming " ..
      util.cut(req.session_id, 12) .. "...): " .. util.cut(req.task, 80))
  else
    log("info", "Dispatching to " .. req.agent_name .. ": " .. util.cut(req.task, 80) .. "...")
  end
end
local announce = M.announce

-- r.on_queued: the dispatch waits for a slot (r.on_started is its span).
local function queued(r) announce(r.on_started) end

-- r.on_started is the span itself, callable (RUNS): a dispatch makes no
-- closure for it. Its first call marks the span as run (span.ran) and
-- queues its start record (trace.started), then says the dispatch's line.
local RUNS = { __call = function(span)
  if not span.ran then
    span.ran = true
    trace.started(span)
  end
  if span.announce then announce(span) end
end }

local function traced(req, ctx, span, later)
  local r = req
  -- A sync call that may be handed off to a job hears of its span.
  if req.on_span then req.on_span(span) end
  if ctx.cap then
    local ok, amount, why = pcall(trace.reserve, ctx, span, req.agent_name,
      request.effective(req).budget)
    if not ok then
      why = { "The tree budget could not be checked (" .. tostring(type(amount) == "table"
        and amount.message or amount) .. "), so the agent was not started.", nil }
      amount = nil
    end
    if not amount then
      announce(span)
      local res = result.failure(req.agent_name, "budget", why[1], { hint = why[2] })
      trace.finish(span, "refused", res)
      return res
    end
    span.reserved = true
    r.tree_left = amount
  end
  r.trace_env = trace.env_value(ctx, span)
  -- The span's start is written once its child has run for a while
  -- (trace.started), off the path between the call and the child's start.
  r.on_started = setmetatable(span, RUNS)
  r.on_queued = queued
  local ok, res = pcall(observed, r)
  r.tree_left, r.trace_env, r.on_started, r.on_queued = nil, nil, nil, nil
  -- (no child ran, or none that said it: a refusal, a failed spawn, a
  -- cancellation while queued)
  if span.announce then announce(span) end
  local started = span.ran == true
  -- (left: a handed-off call's child the keeper reads on settles there,
  -- with what it really cost: ad.domain.keeper)
  if ctx.cap and not span.left then M.settle_tree(ctx, span, req.agent_name, ok and res or nil, started) end
  local cancelled = not ok and type(res) == "table" and res.type == "cancelled"
  local status
  if ok then
    -- A failure without a child (the depth guard, no claude, no
    -- directory) was refused, not run.
    status = (res.success == false and not started) and "refused" or trace.status_of(res)
  else
    status = cancelled and "cancelled" or "error"
  end
  trace.finish(span, status, ok and res or nil, ok and later or nil)
  if not ok then error(res, 0) end
  return res
end

-- What the span of a request records of it, in a table reused by every
-- call (trace.record copies what it needs at once).
local fields = {}
local function span_fields(req)
  fields.kind = req.span_kind or (req.stream and "stream") or
      (req.session_id and "session") or "dispatch"
  fields.agent, fields.task, fields.caller, fields.goal = req.agent_name, req.task, req.caller, req.goal
  fields.span_id, fields.start, fields.job_id = req.span_id, req.span_start, req.job_id
  return fields
end

-- The schema is part of the key: an answer checked against one schema
-- never answers a request for another (or for none); so is the agent's
-- config (config.agent_fingerprint): an answer made before a change of
-- it (a call still running when the change came) never answers after.
local function cache_key(req)
  return json.encode(json.array{ req.agent_name, req.task, req.context or "",
    req.caller or "", req.goal or "", req.response_format or "", req.response_schema or "",
    config.agent_fingerprint(req.settings, req.agent) })
end

local function clean_success(r)
  return r.success == true and not (r.denied_tools and #r.denied_tools > 0)
    and not r.budget_exceeded
end

--- The cache key of a request whose answer may be cached (req.use_cache,
--- not a session turn, caching on), or nil.
function M.cache_key(req)
  if req.use_cache and not req.session_id and state.cache(req.settings) then
    return cache_key(req)
  end
end

-- Stores r under key in cache when it is a clean success that depended
-- on no permission decision.
local function store(cache, key, agent, r)
  if clean_success(r) and not (r.permissions and #r.permissions > 0) then
    cache:put(key, agent, json.encode(r))
  end
end

--- store() in the result cache of settings: how the keeper's job runner
--- caches what it read, as M.run caches what the server read.
function M.remember(settings, key, agent, r)
  local cache = key and state.cache(settings)
  if cache then store(cache, key, agent, r) end
end

--- The one door every dispatch goes through (tools, parallel items, the
--- aggregator, dialogue turns, async jobs, MCP tasks, scripts, `test`),
--- with a request from ad.domain.request. User hooks run here, once: no path can
--- bypass a refusing before_dispatch hook or skip an after_result
--- redaction. Just inside the hooks sits the cache (req.use_cache, never
--- for a session turn): a hit is answered without a child, a clean
--- success is stored. Returns the DispatchResult and the request as it
--- ran (after the hooks), or nil and the message of a refusing
--- before_dispatch hook. Every call records a span (ad.domain.trace) in
--- req.trace (a trace context), else in a new tree; with a tree spend cap
--- the child is refused ("budget") before it spawns when nothing is left.
--- Without hooks, the span's end record and the cache entry are written
--- after the reply of an MCP call (ad.domain.after_reply).
---@param req table
---@return table|nil result, table|string ran_or_refusal
function M.run(req)
  -- (what a dispatch before this one on the same task left for later)
  after_reply.pending()
  local plugins = package.loaded["ad.domain.plugins"]
  local hooked = plugins and plugins.active()
  -- With hooks, the records are written as they were before the hooks
  -- ran (an after_result hook may change the result in place).
  local later = not hooked and after_reply.defer or nil
  local ctx = req.trace or trace.root(req.settings, req.tree_budget_usd)
  local view
  if hooked then
    view = request.view(req)
    local allowed, why = plugins.before_dispatch(view)
    if not allowed then
      trace.instant(ctx, span_fields(req), "refused", { success = false, error_type = "permission" })
      return nil, why
    end
    req = request.with_view(req, view)
  end
  local log = req.log
  local cache = req.use_cache and not req.session_id and state.cache(req.settings) or nil
  local key, r
  if cache then
    key = cache_key(req)
    local hit = cache:get(key)
    if hit then
      if log then log("info", "Cache hit for " .. req.agent_name .. ": " .. util.cut(req.task, 80)) end
      r = result.new(json.decode_shaped(hit))
      r.cached = true
      trace.instant(ctx, span_fields(req), "ok", r, later)
    end
  end
  if not r then
    local span = trace.record(ctx, span_fields(req))
    if req.span_id then span.adopted = true end -- its start was written by async.submit
    -- (said once the child is spawned: M.announce)
    if log then span.announce = req end
    r = traced(req, ctx, span, later)
    -- An answer that depended on permission decisions is not reused, and
    -- says which (ad.domain.relay: by whom, what, when).
    if req.relay_log and #req.relay_log > 0 then
      r.permissions = json.array(util.copy(req.relay_log))
    elseif cache then
      (later or after_reply.now)(store, cache, key, req.agent_name, r)
    end
  end
  if hooked then return plugins.after_result(view, r), req end
  return r, req
end

--- Starts one warm pool process of agent name (ad.domain.live calls it):
--- the agent's own command line over the live channel with a fresh
--- session id, no task yet, no concurrency slot, no lifetime timeout.
--- Returns the channel, its fingerprint and session id, or nil, why.
function M.open_warm(name, cfg)
  local agent = cfg and cfg.agents[name]
  if not agent or agent.host then return nil, "not a local agent" end
  local depth = M.depth()
  if depth >= cfg.settings.max_dispatch_depth then return nil, "dispatch depth" end
  local path = M.claude_path()
  if not path then return nil, "claude CLI not found in PATH" end
  if core.project.health(agent.directory) ~= true then
    return nil, "directory does not exist: " .. tostring(agent.directory)
  end
  if transport.choose(cfg.settings, agent, path) ~= "live" then
    return nil, "the live transport is off or this claude CLI lacks it"
  end
  local req = { agent_name = name, agent = agent, settings = cfg.settings }
  local eff = request.effective(req)
  local sid = core.text.uuid4()
  local argv, refusal = core.claude.argv{ claude = path, prompt_on_stdin = true,
    stream = true, session_id = sid, budget = eff.budget, model = agent.model,
    permission_mode = eff.permission_mode, allowed = eff.allowed,
    disallowed = eff.disallowed }
  if not argv then return nil, refusal end
  -- The command line a fresh dispatch of the agent gets (the relay flag
  -- of an agent with permissions.relay, as ad.domain.request.with_relay).
  argv = channel.argv(argv, { relay = agent.permissions and agent.permissions.relay == true })
  -- Its trace context comes with each request, in its context file.
  local env, ctx_file = kept.with_context_file(M.child_env(depth))
  -- The keeper's child, like a child of a call that may be handed off:
  -- a handed-off call on it outlives this process (ad.domain.keeper).
  local ch, msg = channel.open{ argv = argv, cwd = agent.directory,
    env = env, grace = M.kill_grace, drain = M.drain, session_id = sid,
    keeper = require("ad.domain.keeper").keeps_live(cfg.settings) }
  if not ch then
    trace_file.remove(ctx_file)
    return nil, msg
  end
  ch.ctx_file = ctx_file
  ch:start()
  return ch, kept.fingerprint(name, argv, env, agent.directory), sid
end

--- M.run for callers whose refusals are failed results: a refusing
--- before_dispatch hook becomes a "permission" failure.
---@param req table
---@return table
function M.dispatch(req)
  local r, why = M.run(req)
  if not r then return result.failure(req.agent_name, "permission", why) end
  return r -- one value: the request as it ran stays internal
end

return M
