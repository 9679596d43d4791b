--- Running one dispatch: preconditions, the claude command line, the child
--- process under the shared limiter, and the DispatchResult.
---
--- Two output modes share one code path: "json" (one result object at the
--- end) and "stream" (stream-json lines; assistant lines become progress).
--- In both, a result object that arrived outranks the timeout flag, the
--- child's whole process group goes away when it exits or times out, and
--- every failure becomes a DispatchResult with success=false, error and
--- error_type - never an exception. Cancellation is the one exception:
--- a cancelled task raises errors.new("cancelled", ...) after the child's
--- group has been signalled and reaped.
local core = require "ad.core"
local json = require "ad.json"
local util = require "ad.util"
local errors = require "ad.errors"
local prompt = require "ad.prompt"

local M = {}

M.RESULT_KEYS = { "agent", "success", "result", "session_id", "cost_usd",
  "duration_ms", "num_turns", "error", "error_type", "parsed_result",
  "denied_tools", "hint", "budget_exceeded", "cached" }

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
  AGENT_DISPATCH_DEPTH = true }

local function result(fields)
  return json.object(fields, M.RESULT_KEYS)
end
M.result = result

function M.failure(name, etype, message, extra)
  local r = result({ agent = name, success = false, result = "",
                     error = message, error_type = etype })
  for k, v in pairs(extra or {}) do r[k] = v end
  return r
end

--- Current recursion depth from our own environment (unset or garbage: 0).
function M.depth()
  local raw = os.getenv("AGENT_DISPATCH_DEPTH")
  if raw == nil or raw == "" then return 0 end
  local n = math.tointeger(tonumber(raw))
  if not n then
    io.stderr:write("agent-dispatch: warning: AGENT_DISPATCH_DEPTH=" .. raw ..
      " is not an integer; treating it as 0\n")
    return 0
  end
  return n
end

function M.claude_path()
  local override = os.getenv("AGENT_DISPATCH_CLAUDE")
  return core.sys.which(override ~= nil and override ~= "" and override or "claude")
end

-- The process environment never changes after start: filter it once.
local inherited

function M.child_env(depth)
  if not inherited then
    inherited = {}
    for _, kv in ipairs(core.sys.environ()) do
      local k = kv:match("^([^=]*)=")
      if k and not M.STRIPPED_ENV[k] then inherited[#inherited + 1] = kv end
    end
  end
  local env = table.move(inherited, 1, #inherited, 1, {})
  env[#env + 1] = "AGENT_DISPATCH_DEPTH=" .. (depth + 1)
  return env
end

--- F24: the parsed JSON value of a reply, or nil.
function M.parse_json_reply(text)
  if text == nil or text == "" then return nil end
  local t = util.strip(text)
  if t:sub(1, 3) == "```" then
    local lines = {}
    for line in (t .. "\n"):gmatch("(.-)\n") do lines[#lines + 1] = line end
    table.remove(lines, 1)
    if #lines > 0 and lines[#lines]:sub(1, 3) == "```" then table.remove(lines) end
    t = util.strip(table.concat(lines, "\n"))
  end
  return (json.decode(t))
end

local function effective(agent, settings)
  local e = {}
  e.timeout = (agent.timeout and agent.timeout ~= 0) and agent.timeout or settings.default_timeout
  local b = agent.max_budget_usd
  if not b or b == 0 then b = settings.default_max_budget_usd end
  e.budget = (b and b > 0) and b or nil
  local pm = agent.permission_mode
  if pm == nil or pm == "" then pm = settings.default_permission_mode end
  e.permission_mode = (pm ~= nil and pm ~= "") and pm or nil
  e.allowed = agent.allowed_tools ~= nil and agent.allowed_tools or settings.default_allowed_tools
  e.disallowed = agent.disallowed_tools ~= nil and agent.disallowed_tools or settings.default_disallowed_tools
  return e
end
M.effective = effective

--- F23: flags a result whose reported cost went over the budget.
local function post_hoc_budget(r, budget)
  if r.error_type == "budget" or not budget then return r end
  local cost = r.cost_usd
  if type(cost) == "number" and cost ~= 0 and cost > budget then
    r.budget_exceeded = true
    local note = errors.over_budget_note(cost, budget)
    r.hint = r.hint and (r.hint .. " " .. note) or note
  end
  return r
end

--- F21: the failed result for an is_error payload.
local function error_result(name, f, session_fallback, exit_code, budget)
  local text = f.result or ""
  local msg
  if text ~= "" then
    msg = text
  elseif f.error_detail then
    msg = "Agent '" .. name .. "' failed: " .. f.error_detail
  else
    msg = "Agent '" .. name .. "' reported an error with no details" ..
      (exit_code and (" (exit code " .. exit_code .. ")") or "")
  end
  local session = f.session_id or session_fallback
  local r = result({ agent = name, success = false, result = text,
    session_id = session, cost_usd = f.cost_usd, duration_ms = f.duration_ms,
    num_turns = f.num_turns, denied_tools = f.denied_tools })
  if f.budget_stop then
    if text == "" and f.error_detail then msg = f.error_detail end
    r.error = msg .. errors.budget_hint(name, budget, session)
    r.error_type = "budget"
    r.budget_exceeded = true
    return r
  end
  local etype = f.denied_tools and "permission" or errors.classify(msg)
  if etype == "permission" then msg = msg .. errors.permission_hint(name) end
  r.error, r.error_type = msg, etype
  return post_hoc_budget(r, budget)
end

local function success_result(name, f, session_fallback, response_format, budget)
  local r = result({ agent = name, success = true, result = f.result or "",
    session_id = f.session_id or session_fallback, cost_usd = f.cost_usd,
    duration_ms = f.duration_ms, num_turns = f.num_turns,
    denied_tools = f.denied_tools })
  if response_format == "json" then r.parsed_result = M.parse_json_reply(r.result) end
  if f.denied_tools then r.hint = errors.denial_hint(name, f.denied_tools) end
  return r
end

local function old_cli(stderr)
  local low = (stderr or ""):lower()
  if not low:find("--session-id", 1, true) then return false end
  for _, w in ipairs({ "unknown option", "unrecognized option",
                       "unknown argument", "unexpected argument" }) do
    if low:find(w, 1, true) then return true end
  end
  return false
end

local function spawn_error(name, msg, code, sync)
  if code == "ENOENT" or code == "ENOTDIR" then
    return M.failure(name, "not_found", msg)
  elseif code == "EACCES" or code == "EPERM" then
    return M.failure(name, "permission", msg .. (sync and errors.permission_hint(name) or ""))
  end
  return M.failure(name, "cli_error", msg)
end

--- One child run. Returns a table {payload=, lines=, info=, truncated=,
--- last=} or raises the cancelled error after the child is gone. The
--- prompt goes to the child's stdin (input). A non-stream run keeps at
--- most M.MAX_OUTPUT bytes of stdout lines; past that only the last line
--- (where the CLI's result object is), as last.
local function run_child(argv, input, cwd, env, timeout, on_progress, stream, req)
  local slot = core.limiter.acquire()
  if not slot then error(errors.new("cancelled", "cancelled while queued"), 0) end
  if req.on_slot and req.on_slot() == false then
    slot:release()
    error(errors.new("cancelled", "cancelled before it started"), 0)
  end
  local cap = M.MAX_OUTPUT
  -- With on_spawn the child waits at its start gate until on_spawn has
  -- returned: whatever it records names the child before it runs.
  local p, msg, code = core.proc.spawn{ argv = argv, cwd = cwd, env = env,
    timeout = timeout, grace = M.kill_grace, drain = M.drain, slot = slot,
    stdin = input, gated = req.on_spawn ~= nil,
    max_line = (not stream) and cap or nil, max_output = (not stream) and cap or nil }
  if not p then
    slot:release()
    return { spawn_error = { msg, code } }
  end
  if req.on_spawn and req.on_spawn(p:pid()) == false then
    p:kill(true) -- refused: it never starts
  else
    p:start()
  end
  local out = { lines = {}, progress = 0 }
  -- Redact hooks clean each line at its source, before any consumer (a
  -- job's stored tail, MCP notifications, the run display) sees it.
  local plugins = package.loaded["ad.plugins"]
  local filter = on_progress and plugins and plugins.progress_filter()
  local cancelled = false
  while true do
    local line, err = p:read_line()
    if line == nil then
      cancelled = (err == "cancelled")
      break
    end
    if stream then
      local kind, payload, progress = core.claude.event(line)
      if kind == nil then -- a lone surrogate escape: keep the event (U+FFFD)
        local fixed = json.fix_surrogates(line)
        if fixed then kind, payload, progress = core.claude.event(fixed) end
      end
      if kind == "result" then
        out.payload = payload
      elseif kind == "assistant" and on_progress then
        for _, text in ipairs(progress) do
          out.progress = out.progress + 1
          on_progress(filter and filter(text) or text)
        end
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
  if not stream and (info.truncated or info.skipped_lines > 0) then
    -- Past the cap the process object kept only the last line, delivered
    -- at the end; a line longer than the cap was skipped whole.
    out.truncated = true
    if info.truncated then out.last = table.remove(out.lines) end
  end
  out.info = info
  p:close()
  return out
end

--- Bytes of stdout kept from a non-stream child (its JSON result is one
--- line well below this; 200 MB of stray output must not become 200 MB
--- of server memory). Stream runs keep no output but the result line.
M.MAX_OUTPUT = 8 * 1024 * 1024

M.kill_grace = 2
M.drain = 2

--- An optional observer of every dispatch in this process (the `run`
--- command's progress display): {start(name, req) -> handle,
--- progress(handle, line), finish(handle, result)}.
M.observer = nil

--- Runs one dispatch. req fields: name, agent (config entry), settings,
--- task, context, caller, goal, response_format, session_id (resume),
--- timeout (override seconds, already clamped), stream (bool),
--- on_progress (fn(line)), on_slot (fn() -> false to give up once a
--- concurrency slot is granted), on_spawn (fn(pid) -> false to end the
--- child unstarted; the child waits at its start gate until on_spawn has
--- returned). Returns a DispatchResult.
local observed

--- The one door every dispatch goes through (tools, parallel items, the
--- aggregator, dialogue turns, async jobs, MCP tasks, scripts, `test`):
--- user hooks apply here, so no path can bypass a refusing before_dispatch
--- hook or skip an after_result redaction. Callers that ran the hooks
--- themselves (ad.dispatch.one, around its cache) pass hooks_applied.
function M.dispatch(req)
  local plugins = package.loaded["ad.plugins"]
  if req.hooks_applied or not plugins or not plugins.active() then
    return observed(req)
  end
  local view = { agent = req.name, task = req.task, context = req.context,
    caller = req.caller, goal = req.goal, response_format = req.response_format,
    session_id = req.session_id }
  local allowed, why = plugins.before_dispatch(view)
  if not allowed then return M.failure(req.name, "permission", why) end
  local r = util.copy(req)
  r.task, r.context, r.caller, r.goal = view.task, view.context, view.caller, view.goal
  return plugins.after_result(view, observed(r))
end

observed = function(req)
  local obs = M.observer
  if not obs then return M.dispatch_unobserved(req) end
  local h = obs.start(req.name, req)
  local r = util.copy(req)
  local inner = req.on_progress
  r.on_progress = function(line)
    obs.progress(h, line)
    if inner then inner(line) end
  end
  -- Progress lines exist only in stream mode: observe them there; a plain
  -- dispatch still reports its start and end.
  if not req.stream then r.on_progress = inner end
  local ok, res = pcall(M.dispatch_unobserved, r)
  obs.finish(h, ok and res or nil)
  if not ok then error(res, 0) end
  return res
end

function M.dispatch_unobserved(req)
  local name, agent, settings = req.name, req.agent, req.settings
  local depth = M.depth()
  if depth >= settings.max_dispatch_depth then
    return M.failure(name, "recursion", "Dispatch depth " .. depth .. " >= max " ..
      settings.max_dispatch_depth .. ": an agent is probably dispatching back " ..
      "to its caller (depth " .. depth .. " >= max " .. settings.max_dispatch_depth ..
      "). Raise settings.max_dispatch_depth in agents.yaml if this nesting is intended.")
  end
  local claude = M.claude_path()
  if not claude then
    return M.failure(name, "not_found", "Claude CLI not found in PATH. Install " ..
      "it: https://docs.anthropic.com/en/docs/claude-code (npm install -g " ..
      "@anthropic-ai/claude-code)")
  end
  if core.project.health(agent.directory) ~= true then
    return M.failure(name, "not_found", "Directory does not exist: " .. agent.directory)
  end
  local eff = effective(agent, settings)
  local timeout = req.timeout and req.timeout > 0 and req.timeout or eff.timeout
  local text = prompt.build(req)
  local resume = util.nonempty(req.session_id)
  local fresh = not resume and core.text.uuid4() or nil
  local session_in_use = resume or fresh
  local env = M.child_env(depth)

  local attempt = 0
  while true do
    attempt = attempt + 1
    local argv, refusal = core.claude.argv{ claude = claude, prompt_on_stdin = true,
      stream = req.stream, resume = resume, session_id = fresh,
      budget = eff.budget, model = agent.model,
      permission_mode = eff.permission_mode, allowed = eff.allowed,
      disallowed = eff.disallowed }
    if not argv then
      return M.failure(name, "cli_error", refusal)
    end
    local run = run_child(argv, text, agent.directory, env, timeout, req.on_progress, req.stream, req)
    if run.spawn_error then
      return spawn_error(name, run.spawn_error[1], run.spawn_error[2], not req.stream)
    end
    local info = run.info
    local payload = run.payload
    local stdout
    if not req.stream then
      stdout = util.strip(table.concat(run.lines, "\n"))
      local decoded = stdout ~= "" and json.decode(stdout) or nil
      if type(decoded) == "table" and not json.is_array(decoded) then payload = decoded end
    end
    local stderr = util.strip(info.stderr or "")
    if not req.stream and run.truncated then
      -- Over the cap: only a result object on the last line still counts.
      local last = run.last and json.decode(run.last)
      payload = type(last) == "table" and not json.is_array(last) and last.type == "result"
        and last or nil
      if not payload then
        return M.failure(name, "cli_error", string.format("Output truncated: claude " ..
          "wrote more than %d bytes on stdout (the limit of a dispatch's output) " ..
          "and no result object at the end. The output began: %s", M.MAX_OUTPUT,
          util.cut(stdout, 500)), { session_id = session_in_use })
      end
    end

    if payload then
      local f = core.claude.result(payload)
      local r
      if f.is_error then
        r = error_result(name, f, session_in_use, (not req.stream) and info.exit_code or nil, eff.budget)
      else
        r = success_result(name, f, session_in_use, req.response_format, eff.budget)
        if info.timed_out then
          local note = "The final answer arrived, but the process had to be killed " ..
            "at the " .. timeout .. "s deadline; the answer is complete."
          r.hint = r.hint and (r.hint .. " " .. note) or note
        end
        r = post_hoc_budget(r, eff.budget)
      end
      return r
    end
    if info.timed_out then
      return M.failure(name, "timeout", errors.timeout_message(name, timeout, session_in_use),
        { session_id = session_in_use })
    end
    if attempt == 1 and fresh and info.exit_code ~= 0 and (stdout or "") == "" and old_cli(stderr) then
      io.stderr:write("agent-dispatch: warning: this claude CLI does not know " ..
        "--session-id; retrying without it (a timed-out dispatch will not be resumable)\n")
      fresh, session_in_use = nil, nil
    else
      local out_text = stdout or ""
      if not req.stream and out_text ~= "" and info.exit_code == 0 then
        -- Plain-text tier: stdout that is not a JSON object.
        local r = result({ agent = name, success = true, result = out_text,
                           session_id = session_in_use })
        if req.response_format == "json" then r.parsed_result = M.parse_json_reply(out_text) end
        return r
      end
      local msg
      if out_text ~= "" then
        msg = out_text
      elseif stderr ~= "" then
        msg = stderr
      elseif req.stream then
        msg = "No result received (exit code " .. info.exit_code .. ")"
      elseif info.exit_code ~= 0 then
        msg = "claude exited with code " .. info.exit_code
      elseif info.signal ~= 0 then
        msg = "claude was killed by signal " .. info.signal .. " and produced no output"
      else
        msg = "claude exited with code " .. info.exit_code .. " and produced no output"
      end
      local etype = errors.classify(msg)
      local r = result({ agent = name, success = false, result = out_text,
        session_id = session_in_use,
        error = msg .. (etype == "permission" and errors.permission_hint(name) or ""),
        error_type = etype })
      return r
    end
  end
end

return M
