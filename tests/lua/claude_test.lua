-- ad.domain.claude over recorded output of the real Claude Code CLI (2.1.328,
-- against tests/mock_api/server.js; tests/real/FINDINGS.md says how):
-- each case names a recording in claude_output/, how it ran, and the
-- DispatchResult it must read as. Plus edge cases the CLI may write.
-- Run: agent-dispatch run tests/lua/claude_test.lua
local here = arg[0]:match("(.*/)") or "./"
local tap = dofile(here .. "tap.lua")
local test, eq, ok, has = tap.test, tap.eq, tap.ok, tap.has
local core = require "ad.core"
local claude = require "ad.domain.claude"

local function lines_of(name)
  local text = assert(core.fs.read_file(here .. "claude_output/" .. name .. ".jsonl"))
  local out = {}
  for line in text:gmatch("[^\n]+") do out[#out + 1] = line end
  return out
end

-- What the runner collects from a child that printed the recording.
local function run_of(name, stream, exit_code)
  local run = { info = { exit_code = exit_code or 0, signal = 0, timed_out = false, stderr = "" },
                session_id = "fresh-uuid", fresh = true, timeout = 300, budget = nil,
                max_output = 8 * 1024 * 1024, lines = {}, progress = {} }
  for _, line in ipairs(lines_of(name)) do
    if stream then
      local kind, obj, progress = claude.event(line)
      if kind == "result" then run.payload = obj end
      for _, p in ipairs(progress or {}) do run.progress[#run.progress + 1] = p end
    else
      run.lines[#run.lines + 1] = line
    end
  end
  return run
end

local CASES = {
  { file = "json_success", want = { success = true, result = "hello there",
    session_id = "78fe3c4c-1f36-482e-a2b6-bb75119502dc", cost_usd = 0.0001,
    duration_ms = 163, num_turns = 1 } },
  { file = "json_success", response_format = "json",
    want = { success = true, result = "hello there", parsed_result = nil } },
  { file = "json_reply_json", response_format = "json",
    want = { success = true, result = "{\"a\": [1, 2", parsed_result = nil } },
  { file = "json_budget", exit_code = 1, budget = 0.01,
    want = { success = false, error_type = "budget", budget_exceeded = true,
      result = "", num_turns = 1, cost_usd = 4.00004,
      session_id = "106ed4f0-cda1-4aa1-936d-e6edffcabefd" },
    error_has = { "Reached maximum budget ($0.01)", "--max-budget-usd" } },
  { file = "json_denied", want = { success = true, num_turns = 2 },
    denied = { "Bash" }, hint_has = { "Bash" } },
  { file = "stream_parts", stream = true, want = { success = true, result = "part 3" },
    progress = { "part 1", "part 2", "part 3" } },
  { file = "stream_denied", stream = true, want = { success = true }, denied = { "Bash" },
    progress = { "Using tool: Bash", "TOOL DONE: touch in '/tmp/cx/touched2' needs " ..
      "approval. The path is outside the working directories for this session " ..
      "('/tmp/rec'). Allowing runs the command as written." } },
  { file = "stream_budget", stream = true, exit_code = 1, budget = 0.01,
    want = { success = false, error_type = "budget", budget_exceeded = true },
    progress = { "MOCK: [mock:tokens=200000] spend" },
    error_has = { "Reached maximum budget ($0.01)" } },
  -- --json-schema: the model called StructuredOutput with a matching input.
  { file = "json_schema_match", response_schema = '{"type":"object"}',
    want = { success = true, result = '{"answer":"42"}', num_turns = 2 },
    structured = { answer = "42" } },
  { file = "stream_schema_match", stream = true, response_schema = '{"type":"object"}',
    want = { success = true, result = '{"answer":"42"}' }, structured = { answer = "42" } },
  -- The same output without a schema asked for: no structured_output.
  { file = "json_schema_match", want = { success = true, structured_output = nil } },
  -- A mismatch: the CLI asked again, the model answered in text, and the
  -- CLI still said success, without structured_output.
  { file = "json_schema_mismatch", response_schema = '{"type":"object"}',
    want = { success = false, error_type = "schema", num_turns = 3,
      session_id = "f04657d4-4b48-48d5-b3d0-910b5e568554", structured_output = nil },
    error_has = { "without an answer matching response_schema" },
    hint_has = { "f04657d4-4b48-48d5-b3d0-910b5e568554" } },
}

for _, c in ipairs(CASES) do
  test("interpret " .. c.file .. (c.response_format and " as json" or "") ..
       (c.response_schema and " with a schema" or ""), function()
    local run = run_of(c.file, c.stream, c.exit_code)
    run.budget = c.budget
    local r = claude.interpret(run, { agent_name = "a", stream = c.stream,
      response_format = c.response_format, response_schema = c.response_schema })
    ok(r, "a result")
    eq(r.agent, "a", "agent")
    for k, v in pairs(c.want) do eq(r[k], v, k) end
    for _, s in ipairs(c.error_has or {}) do has(r.error, s, "error") end
    for k, v in pairs(c.structured or {}) do eq(r.structured_output[k], v, "structured_output." .. k) end
    for _, s in ipairs(c.hint_has or {}) do has(r.hint, s, "hint") end
    if c.denied then
      eq(#r.denied_tools, #c.denied, "denied_tools")
      for i, name in ipairs(c.denied) do eq(r.denied_tools[i], name, "denied_tools[" .. i .. "]") end
    else
      eq(r.denied_tools, nil, "denied_tools")
    end
    if c.progress then
      eq(#run.progress, #c.progress, "progress lines")
      for i, p in ipairs(c.progress) do eq(run.progress[i], p, "progress " .. i) end
    end
  end)
end

test("event: every recorded line has its kind; non-objects are no events", function()
  local kinds = {}
  for _, line in ipairs(lines_of("stream_denied")) do kinds[#kinds + 1] = (claude.event(line)) end
  eq(table.concat(kinds, ","), "system,assistant,system,user,assistant,result")
  for _, line in ipairs({ "", "   ", "42", "[1]", "not json", "{broken", "null" }) do
    eq(claude.event(line), nil, line)
  end
  eq(claude.event('{"no":"type"}'), "", "no type")
  eq(claude.event('  {"type":7}'), "", "a non-string type")
  local kind, _, progress = claude.event('{"type":"assistant","message":{"content":' ..
    '[1, {"type":"text","text":""}, {"type":"tool_use","name":""}, {"type":"text","text":"' ..
    string.rep("é", 600) .. '"}]}}')
  eq(kind, "assistant")
  eq(#progress, 2); eq(progress[1], "Using tool: ?"); eq(progress[2], string.rep("é", 500))
  local _, _, none = claude.event('{"type":"assistant","message":"x"}')
  eq(#none, 0, "no content, no progress")
end)

test("event: a lone surrogate escape is kept as U+FFFD", function()
  local kind, obj = claude.event('{"type":"result","result":"cut \\ud83d","is_error":false}')
  eq(kind, "result"); eq(obj.result, "cut \u{FFFD}")
end)

test("result: errors joined and cut, the subtype as the last resort", function()
  local long = string.rep("x", 400)
  local f = claude.result({ is_error = true, errors = { "  one  ", "", { code = 1 }, long,
    "4", "5", "6" } })
  eq(f.error_detail, 'one; {"code":1}; ' .. string.rep("x", 300) .. "; 4; 5")
  eq(claude.result({ subtype = "error_during_execution" }).error_detail,
     "claude CLI reported 'error_during_execution'")
  eq(claude.result({ subtype = "  " }).error_detail, nil)
  eq(claude.result({ result = { 1 } }).result, "[1]")
  eq(claude.result({ result = require("ad.infra.json").null }).result, "")
end)

test("result: numbers only where numbers belong; denied tools deduplicated", function()
  local f = claude.result({ total_cost_usd = "1", duration_ms = 12.0, num_turns = 2.5,
    session_id = "", permission_denials = { { tool_name = "Bash" }, { tool = "Bash" },
      { tool_name = "" }, "Edit", { tool_name = string.rep("t", 150) } } })
  eq(f.cost_usd, nil); eq(math.type(f.duration_ms), "integer"); eq(f.num_turns, 2)
  eq(f.session_id, nil)
  eq(table.concat(f.denied_tools, ","), "Bash,unknown,Edit," .. string.rep("t", 100))
  local many = {}
  for i = 1, 20 do many[i] = { tool_name = "t" .. i } end
  eq(#claude.result({ permission_denials = many }).denied_tools, 10)
  eq(claude.result({ permission_denials = {} }).denied_tools, nil)
  ok(claude.result({ terminal_reason = "budget_exhausted" }).budget_stop, "budget stop")
end)

test("interpret: timeout, spawn errors, plain text, an old CLI, truncation", function()
  local req = { agent_name = "a" }
  local function info(t)
    t.signal, t.stderr = t.signal or 0, t.stderr or ""
    t.exit_code = t.exit_code or 0
    return t
  end
  local r = claude.interpret({ info = info{ timed_out = true, exit_code = -1 }, lines = {},
    session_id = "s1", timeout = 30 }, req)
  eq(r.error_type, "timeout"); eq(r.session_id, "s1"); has(r.error, "30")
  eq(claude.interpret({ spawn_error = { "no such file", "ENOENT" } }, req).error_type, "not_found")
  eq(claude.interpret({ spawn_error = { "denied", "EACCES" } }, req).error_type, "permission")
  r = claude.interpret({ info = info{}, lines = { "just text" } }, { agent_name = "a",
    response_format = "json" })
  eq(r.success, true); eq(r.result, "just text"); eq(r.parsed_result, nil)
  eq(claude.interpret({ info = info{ exit_code = 1,
    stderr = "error: unknown option '--session-id'" }, lines = {}, fresh = true }, req), nil)
  r = claude.interpret({ info = info{ exit_code = 1,
    stderr = "error: unknown option '--session-id'" }, lines = {}, fresh = false }, req)
  eq(r.success, false); has(r.error, "unknown option")
  r = claude.interpret({ info = info{}, lines = { "junk" }, truncated = true, last = "more junk",
    max_output = 100 }, req)
  has(r.error, "Output truncated"); has(r.error, "100 bytes")
  r = claude.interpret({ info = info{}, lines = { "junk" }, truncated = true,
    last = '{"type":"result","result":"ok"}', max_output = 100 }, req)
  eq(r.success, true); eq(r.result, "ok")
  r = claude.interpret({ info = info{ signal = 9 }, lines = {} }, req)
  has(r.error, "signal 9")
  r = claude.interpret({ info = info{ exit_code = 3 }, payload = nil }, { agent_name = "a",
    stream = true })
  eq(r.error, "No result received (exit code 3)")
end)

return tap.done()
