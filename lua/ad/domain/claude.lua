--- What the claude CLI writes, read once, here: a stream-json line
--- (event), a result object (result), and a whole run (interpret) become
--- a DispatchResult. Pure: no process, no file, no clock; the runner
--- hands over what it collected. lua-cjson decodes (through ad.infra.json);
--- all shaping happens in this file, once.
---
--- The CLI's output is untrusted data: every field may be missing, of the
--- wrong type or huge, so numbers are kept only where numbers belong, texts
--- are cut, and nothing here raises on a strange value.
local cjson = require "cjson"
local json = require "ad.infra.json"
local util = require "ad.infra.util"
local errors = require "ad.infra.errors"
local result = require "ad.domain.result"

local M = {}

-- ---- stream-json lines ------------------------------------------------------

--- The progress lines of an assistant message: its text blocks (first 500
--- code points) and "Using tool: <name>" for each tool use.
local function progress_of(obj)
  local out = {}
  local msg = obj.message
  local content = type(msg) == "table" and msg.content
  if type(content) ~= "table" then return out end
  for _, block in ipairs(content) do
    if type(block) == "table" then -- a non-object block is skipped
      local kind = block.type
      if kind == "text" then
        local text = block.text
        if type(text) == "string" and text ~= "" then out[#out + 1] = util.cut(text, 500) end
      elseif kind == "tool_use" then
        local name = block.name
        out[#out + 1] = "Using tool: " .. ((type(name) == "string" and name ~= "") and name or "?")
      end
    end
  end
  return out
end

--- One stream-json line: kind, object [, progress]. nil for a blank,
--- non-JSON or non-object line; kind is "" when the object has no string
--- type. For "assistant", progress is the list of its progress lines.
--- Unknown kinds (tool_progress, system...) pass through by name.
---@param line string
---@return string|nil kind, table|nil obj, string[]|nil progress
function M.event(line)
  if not line:find("^[ \t\r]*{") then return nil end
  local obj = json.decode(line) -- a lone surrogate escape is kept as U+FFFD
  if type(obj) ~= "table" then return nil end
  local kind = obj.type
  if type(kind) ~= "string" then kind = "" end
  if kind == "assistant" then return kind, obj, progress_of(obj) end
  if kind == "result" then M.shape_structured(obj, line) end
  return kind, obj
end

--- The structured_output of result object obj (decoded from text) as
--- text has it: its empty arrays stay arrays (json.decode_shaped), as the
--- schema it answers may require.
function M.shape_structured(obj, text)
  if type(obj.structured_output) == "table" then
    local v = json.member_shaped(text, "structured_output")
    if v ~= nil then obj.structured_output = v end
  end
end

-- ---- the result object -------------------------------------------------------

local function truthy(v)
  local t = type(v)
  if t == "boolean" then return v end
  if t == "number" then return v ~= 0 end
  if t == "string" then return v ~= "" end
  if t == "table" then return next(v) ~= nil end
  return false
end

--- Any JSON value as text: strings as they are, null as "", the rest as
--- JSON.
local function as_text(v)
  if type(v) == "string" then return v end
  if v == nil or v == cjson.null then return "" end
  local ok, s = pcall(cjson.encode, v)
  return ok and s or tostring(v)
end

-- A number, or nil. Integer fields (durations, turns) come back as Lua
-- integers: a float is cut toward zero when it is in the integer range.
local tointeger, floor, ceil = math.tointeger, math.floor, math.ceil
local function number(v, integer)
  if type(v) ~= "number" then return nil end
  if integer then
    -- (cjson reads every number as a float: most are integral already)
    local i = tointeger(v)
    if i then return i end
    if v >= -2^63 and v < 2^63 then return tointeger(v >= 0 and floor(v) or ceil(v)) end
  end
  return v
end

-- The CLI's texts are trimmed of spaces, tabs and line ends only.
local function trim(s)
  return (s:gsub("^[ \t\r\n]+", ""):gsub("[ \t\r\n]+$", ""))
end

local function nonempty_string(v)
  if type(v) == "string" and v ~= "" then return v end
  return nil
end

--- "e1; e2; ..." from the first five non-blank entries of errors (each
--- cut to 300 code points), or nil.
local function error_detail(payload)
  local errs, parts = payload.errors, {}
  if type(errs) == "table" then
    for _, e in ipairs(errs) do
      if #parts >= 5 then break end
      local s = trim(as_text(e))
      if s ~= "" then parts[#parts + 1] = util.cut(s, 300) end
    end
  end
  if #parts > 0 then return table.concat(parts, "; ") end
  local sub = payload.subtype
  if type(sub) == "string" and trim(sub) ~= "" then
    return "claude CLI reported '" .. util.cut(sub, 300) .. "'"
  end
  return nil
end

--- Denied tool names, deduplicated, at most 10 of at most 100 code points
--- (or nil when there are none).
local function denied_tools(payload)
  local list = payload.permission_denials
  if type(list) ~= "table" or #list == 0 then return nil end
  local out, seen = json.array(), {}
  for _, d in ipairs(list) do
    if #out >= 10 then break end
    local name = d
    if type(d) == "table" then
      name = d.tool_name
      if not truthy(name) then name = d.tool end
      if not truthy(name) then name = "unknown" end
    end
    name = util.cut(as_text(name), 100)
    if not seen[name] then
      seen[name] = true
      out[#out + 1] = name
    end
  end
  return out
end

--- The result object of a run reduced to trusted shapes: result (text),
--- is_error, session_id, cost_usd, duration_ms, num_turns, subtype,
--- terminal_reason, error_detail, denied_tools, budget_stop,
--- structured_output (the answer to --json-schema: any JSON value but null).
-- M.result, with error_detail only when detail (a run's interpretation
-- reads it of a failure only: a success is not asked for one).
local function shaped(payload, detail)
  local f = {
    result = as_text(payload.result),
    is_error = truthy(payload.is_error),
    session_id = nonempty_string(payload.session_id),
    cost_usd = number(payload.total_cost_usd),
    duration_ms = number(payload.duration_ms, true),
    num_turns = number(payload.num_turns, true),
    subtype = nonempty_string(payload.subtype),
    terminal_reason = nonempty_string(payload.terminal_reason),
    error_detail = detail and error_detail(payload) or nil,
    denied_tools = denied_tools(payload),
  }
  if payload.structured_output ~= nil and payload.structured_output ~= cjson.null then
    f.structured_output = payload.structured_output
  end
  f.budget_stop = f.subtype == "error_max_budget_usd" or f.terminal_reason == "budget_exhausted"
  return f
end

---@param payload table
---@return table
function M.result(payload)
  return shaped(payload, true)
end

--- True when result payload reports a failure (is_error, as M.result
--- reads it).
function M.failed(payload)
  return truthy(payload.is_error)
end

-- ---- a whole run -------------------------------------------------------------

--- F24: the parsed JSON value of a reply (code fences removed), or nil.
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
  return (json.decode_shaped(t))
end

--- F23: flags a result whose reported cost went over the budget.
local function post_hoc_budget(r, budget, by_tree)
  if r.error_type == "budget" or not budget then return r end
  local cost = r.cost_usd
  if type(cost) == "number" and cost ~= 0 and cost > budget then
    r.budget_exceeded = true
    local note = errors.over_budget_note(cost, budget, by_tree)
    r.hint = r.hint and (r.hint .. " " .. note) or note
  end
  return r
end

--- F21: the failed result for an is_error payload.
local function error_result(name, f, session_fallback, exit_code, budget, by_tree)
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
  local r = result.new({ agent = name, success = false, result = text,
    session_id = session, cost_usd = f.cost_usd, duration_ms = f.duration_ms,
    num_turns = f.num_turns, denied_tools = f.denied_tools })
  if f.budget_stop then
    if text == "" and f.error_detail then msg = f.error_detail end
    r.error = msg .. errors.budget_hint(name, budget, session, by_tree)
    r.error_type = "budget"
    r.budget_exceeded = true
    return r
  end
  local etype = f.denied_tools and "permission" or errors.classify(msg)
  if etype == "permission" then msg = msg .. errors.permission_hint(name) end
  r.error, r.error_type = msg, etype
  return post_hoc_budget(r, budget, by_tree)
end

--- A run asked for a response_schema that ended without structured_output
--- (the CLI reports success when the model gave up on the schema): r
--- becomes the "schema" failure, keeping the agent's text and session.
function M.schema_failure(r)
  r.success = false
  r.error_type = "schema"
  r.error = "Agent '" .. r.agent .. "' finished without an answer matching " ..
    "response_schema (the claude CLI returned no structured_output)."
  local note = "Its last reply is in result. Make the schema easier to satisfy or " ..
    "describe the expected fields in the task, and dispatch again" ..
    (r.session_id and (" (or continue with dispatch_session and session_id " ..
      r.session_id .. ")") or "") .. "."
  r.hint = r.hint and (r.hint .. " " .. note) or note
  return r
end

-- The DispatchResult of a successful result payload, its fields read as
-- shaped() reads them.
local function success_result(name, payload, session_fallback, req)
  local denied = denied_tools(payload)
  local r = result.new({ agent = name, success = true, result = as_text(payload.result),
    session_id = nonempty_string(payload.session_id) or session_fallback,
    cost_usd = number(payload.total_cost_usd),
    duration_ms = number(payload.duration_ms, true), num_turns = number(payload.num_turns, true),
    denied_tools = denied })
  if req.response_format == "json" then r.parsed_result = M.parse_json_reply(r.result) end
  if denied then r.hint = errors.denial_hint(name, denied) end
  if req.response_schema then
    local so = payload.structured_output
    if so ~= nil and so ~= cjson.null then r.structured_output = so end
    if r.structured_output == nil then return M.schema_failure(r) end
  end
  return r
end

--- True when stderr says the CLI does not know --session-id (an old build).
local function old_cli(stderr)
  local low = (stderr or ""):lower()
  if not low:find("--session-id", 1, true) then return false end
  for _, w in ipairs({ "unknown option", "unrecognized option",
                       "unknown argument", "unexpected argument" }) do
    if low:find(w, 1, true) then return true end
  end
  return false
end

local function spawn_failure(name, msg, code, sync)
  if code == "ENOENT" or code == "ENOTDIR" then
    return result.failure(name, "not_found", msg)
  elseif code == "EACCES" or code == "EPERM" then
    return result.failure(name, "permission", msg .. (sync and errors.permission_hint(name) or ""))
  elseif code == "EAGAIN" or code == "EMFILE" or code == "ENFILE" or code == "ENOMEM" then
    -- The system refused the process: say which limit, not only errno's text.
    return result.failure(name, "cli_error", "claude could not be started: " .. tostring(msg) ..
      " (" .. (code == "EAGAIN" and "the limit of processes (ulimit -u) was reached" or
        code == "ENOMEM" and "out of memory" or "the limit of open files (ulimit -n) was reached") ..
      "); nothing ran. Retry when fewer processes run, or raise the limit.")
  end
  return result.failure(name, "cli_error", msg)
end

local function object(v)
  return type(v) == "table" and not json.is_array(v) and v or nil
end

--- The failure of a run that left no result object.
local function no_result(name, run, req, stdout, stderr)
  local info = run.info
  local msg
  if stdout ~= "" then
    msg = stdout
  elseif stderr ~= "" then
    msg = stderr
  elseif info.signal ~= 0 and info.exit_code == 0 then
    -- Killed from outside (the OOM killer, a kill -9): say so; there is no
    -- "exit code" to speak of then, and its progress events may have come
    -- (they are not stdout kept here), so "no output" could be wrong.
    msg = "claude was killed by signal " .. info.signal .. " before it sent a result"
  elseif req.stream then
    msg = "No result received (exit code " .. info.exit_code .. ")"
  elseif info.exit_code ~= 0 then
    msg = "claude exited with code " .. info.exit_code
  else
    msg = "claude exited with code " .. info.exit_code .. " and produced no output"
  end
  local etype = errors.classify(msg)
  return result.new({ agent = name, success = false, result = stdout,
    session_id = run.session_id,
    error = msg .. (etype == "permission" and errors.permission_hint(name) or ""),
    error_type = etype })
end

--- The DispatchResult of one run of the CLI, or nil when the run should be
--- repeated without --session-id (an old CLI refused the flag).
---
--- run: what the runner collected - spawn_error = {message, code} (nothing
--- ran), or info (the process's exit info: exit_code, signal, timed_out,
--- stderr), lines (stdout lines, json mode), payload (the result event,
--- stream mode), truncated and last (json mode over the output cap) - plus
--- the facts of this attempt: session_id (the session in use, or nil),
--- fresh (it was started with --session-id), timeout (seconds), budget
--- (the cap passed, or nil), max_output (the output cap, bytes).
--- req: the request (agent_name, stream, response_format, response_schema).
---@return table|nil
function M.interpret(run, req)
  local name = req.agent_name
  if run.spawn_error then
    return spawn_failure(name, run.spawn_error[1], run.spawn_error[2], not req.stream)
  end
  local info = run.info
  local payload = run.payload
  local stdout = ""
  if not req.stream and run.lines and run.lines[1] then
    stdout = util.strip(table.concat(run.lines, "\n"))
  end
  -- A live run (ad.domain.live_run) read its result as an event; its
  -- lines are only what was not one.
  if not req.stream and not run.live then
    payload = stdout ~= "" and object(json.decode(stdout)) or nil
    if payload then M.shape_structured(payload, stdout) end
  end
  if run.truncated and not ((run.live or req.stream) and payload) then
    -- Over the cap (a line longer than it is dropped whole, in every
    -- mode): only a result object on the last line still counts.
    local last = run.last and object(json.decode(run.last))
    payload = (not run.live) and last and last.type == "result" and last or nil
    if not payload then
      return result.failure(name, "cli_error", string.format("Output truncated: claude " ..
        "wrote more than %d bytes on stdout (the limit of a dispatch's output) " ..
        "and no result object at the end%s", run.max_output,
        stdout ~= "" and (". The output began: " .. util.cut(stdout, 500))
          or " (the result line itself was over the limit)"),
        { session_id = run.session_id })
    end
  end
  if payload then
    if truthy(payload.is_error) then
      return error_result(name, shaped(payload, true), run.session_id,
        (not req.stream) and info.exit_code or nil, run.budget, run.budget_by_tree)
    end
    -- (a success is made straight from the payload: no shaped copy first)
    local r = success_result(name, payload, run.session_id, req)
    if info.timed_out then
      local note = "The final answer arrived, but the process had to be killed " ..
        "at the " .. run.timeout .. "s deadline; the answer is complete."
      r.hint = r.hint and (r.hint .. " " .. note) or note
    end
    return post_hoc_budget(r, run.budget, run.budget_by_tree)
  end
  if info.timed_out then
    return result.failure(name, "timeout", errors.timeout_message(name, run.timeout,
      run.session_id), { session_id = run.session_id })
  end
  local stderr = util.strip(info.stderr or "")
  if run.fresh and info.exit_code ~= 0 and stdout == "" and old_cli(stderr) then
    return nil
  end
  if not req.stream and stdout ~= "" and info.exit_code == 0 then
    -- Plain-text tier: stdout that is not a JSON object.
    local r = result.new({ agent = name, success = true, result = stdout,
                           session_id = run.session_id })
    if req.response_format == "json" then r.parsed_result = M.parse_json_reply(stdout) end
    if req.response_schema then return M.schema_failure(r) end
    return r
  end
  return no_result(name, run, req, stdout, stderr)
end

return M
