-- Lua policy tests: prompts, classification, groups, JSON shapes, dialogue
-- and aggregation logic, config validation and round trips, tasks.
-- Run: agent-dispatch run tests/lua/policy_test.lua
local here = arg[0]:match("(.*/)") or "./"
local tap = dofile(here .. "tap.lua")
local test, eq, ok, has = tap.test, tap.eq, tap.ok, tap.has
local core = require "ad.core"
local json = require "ad.infra.json"

test("prompt: task only is verbatim; context only uses the legacy form", function()
  local prompt = require "ad.domain.prompt"
  eq(prompt.build{ task = "fix bug" }, "fix bug")
  eq(prompt.build{ task = "fix bug", context = "Error: NPE" }, "Context:\nError: NPE\n\nTask:\nfix bug")
end)

test("prompt: caller/goal sections in order, json footer last", function()
  local prompt = require "ad.domain.prompt"
  local p = prompt.build{ task = "check logs", caller = "backend", goal = "debug crash",
                          context = "trace", response_format = "json" }
  has(p, "## Goal\ndebug crash\n\n## Dispatched by\nbackend\n\n## Context\ntrace\n\n## Task\ncheck logs")
  ok(p:sub(-#'{"error": "<reason>"}.') == '{"error": "<reason>"}.', "ends with the error form")
  ok(not prompt.build{ task = "t", caller = "c" }:find("## Goal"), "no goal section")
  ok(not prompt.build{ task = "t", goal = "g" }:find("## Dispatched by"), "no caller section")
end)

test("errors.classify: permission words vs everything else", function()
  local errors = require "ad.infra.errors"
  for _, s in ipairs({ "permission denied for tool Bash", "Tool_use is not allowed in this mode",
      "Tool is not available for this agent", "Action not permitted by policy",
      "Unauthorized access attempt" }) do
    eq(errors.classify(s), "permission", s)
  end
  for _, s in ipairs({ "connection refused", "claude exited with code 1", "", 42 }) do
    eq(errors.classify(s), "cli_error", tostring(s))
  end
  eq(errors.classify(nil), "cli_error")
  local h = errors.permission_hint("infra")
  has(h, "Hint"); has(h, "infra"); has(h, "bypassPermissions"); has(h, "--allowed-tools")
end)

test("errors: budget hint names the cap and the resumable call", function()
  local errors = require "ad.infra.errors"
  local h = errors.budget_hint("db", 0.25, "sess-1")
  has(h, "$0.25"); has(h, "--max-budget-usd"); has(h, "session_id='sess-1'")
  has(errors.budget_hint("db", nil, nil), "the configured cap")
  local t = errors.timeout_message("db", 300, "abc")
  has(t, "timed out"); has(t, "timeout_seconds"); has(t, "dispatch_session"); has(t, "abc")
  has(errors.over_budget_note(0.05, 0.01), "$0.0500")
end)

test("groups: membership errors and context folding", function()
  local groups = require "ad.domain.groups"
  local cfg = { agents = { a = {}, b = {} }, group_names = { "g", "empty" },
    groups = { g = { shared_context = "  prod is eu  ", members = { { agent = "a" } } },
               empty = { shared_context = "", members = {} } } }
  has(groups.check(cfg, "nope", "a"), "Unknown group")
  has(groups.check(cfg, "empty", "a"), "no members")
  has(groups.check(cfg, "g", "b"), "not a member")
  eq(groups.check(cfg, "g", "a"), nil)
  eq(groups.fold(cfg, "g", " ctx "), "Shared context (group 'g'):\nprod is eu\n\nctx")
  eq(groups.fold(cfg, "g", nil), "Shared context (group 'g'):\nprod is eu")
  eq(groups.fold(cfg, "empty", "as is"), "as is")
end)

test("json: empty arrays stay arrays, key order kept, ids raw", function()
  eq(json.encode({ a = json.array() }), '{"a":[]}')
  eq(json.encode({}), "{}")
  eq(json.encode(json.object({ b = 1, a = 2 }, { "b", "a" })), '{"b":1,"a":2}')
  eq(json.encode({ id = json.raw("9007199254740993") }), '{"id":9007199254740993}')
  eq(json.encode({ p = "a/b é" }), '{"p":"a/b é"}')
  eq(json.encode({ "x", "y" }), '["x","y"]')
  local bad = json.encode({ s = "\xff" })
  ok(core.text.valid(bad), "invalid UTF-8 repaired")
end)

test("runner.parse_json_reply: fences, scalars, failures", function()
  local parse = require("ad.domain.runner").parse_json_reply
  eq(parse('{"a":1}').a, 1)
  eq(parse('```json\n{"a":2}\n```').a, 2)
  eq(#parse('```\n[1,2]\n```'), 2)
  eq(parse("42"), 42); eq(parse('"hello"'), "hello"); eq(parse("true"), true)
  eq(parse("null"), nil); eq(parse(""), nil); eq(parse("prose"), nil)
  eq(parse("```python\nprint(1)\n```"), nil)
end)

local function fake(script)
  local i = 0
  return function(agent, other, role, round, prompt, session)
    i = i + 1
    local step = script[i] or { text = "..." }
    return { agent = agent, success = step.fail == nil, result = step.text or "",
             session_id = agent .. "-s", cost_usd = 0.01, duration_ms = 1000,
             error = step.fail, error_type = step.fail and "permission" or nil }
  end
end

test("dialogue: resolved by the responder in round 1", function()
  local d = require("ad.domain.dialogue").run({ requester = "web", responder = "api", topic = "t",
    max_rounds = 3 }, fake({ { text = "use /v2 [RESOLVED]" } }))
  eq(d.resolved, true); eq(d.rounds, 1); eq(#d.conversation, 1)
  eq(d.final_answer, "use /v2"); eq(d.total_cost_usd, 0.01); eq(d.total_duration_ms, 1000)
end)

test("dialogue: never resolved, requester resolves, failure ends it", function()
  local dl = require "ad.domain.dialogue"
  local d = dl.run({ requester = "w", responder = "a", topic = "t", max_rounds = 2 }, fake({}))
  eq(d.resolved, false); eq(#d.conversation, 4); eq(d.rounds, 2)
  eq(d.conversation[2].role, "requester")
  d = dl.run({ requester = "w", responder = "a", topic = "t", max_rounds = 3 },
    fake({ { text = "q?" }, { text = "thanks [RESOLVED]" } }))
  eq(#d.conversation, 2); eq(d.final_answer, "thanks")
  d = dl.run({ requester = "w", responder = "a", topic = "t", max_rounds = 3 },
    fake({ { fail = "permission denied" } }))
  eq(d.resolved, false); eq(#d.conversation, 1); has(d.final_answer, "permission denied")
  eq(d.conversation[1].error_type, "permission")
end)

test("aggregate: sections with status and ref previews", function()
  local agg = require "ad.domain.aggregate"
  eq(agg.section({ agent = "a", success = true, result = "fine" }), "## Agent: a [OK]\nfine")
  eq(agg.section({ agent = "b", success = false, result = "", error = "boom" }), "## Agent: b [FAILED]\nboom")
  has(agg.section({ agent = "c", success = true, summary = "big", size = 3000 }), "preview of 3000 chars")
end)

local function cfg_of(yaml)
  local doc = assert(core.yaml.load(yaml))
  return pcall(require("ad.storage.config").from_document, doc, "/tmp/x.yaml")
end

test("config: defaults and validation", function()
  local good, c = cfg_of("agents:\n  a:\n    directory: /tmp\n")
  ok(good, "valid config")
  local a = c.agents.a
  eq(a.timeout, 300); eq(a.description, ""); eq(a.allowed_tools, nil); eq(#a.capabilities, 0)
  eq(c.settings.max_concurrency, 5); eq(c.settings.max_dispatch_depth, 3)
  local cases = {
    { "agents:\n  a:\n    directory: 123\n", "directory" },
    { "agents:\n  a:\n    directory: [x]\n", "directory" },
    { "agents:\n  a:\n    directory: /tmp\n    timeout: -5\n", "timeout" },
    { "settings:\n  max_concurrency: 0\n", "max_concurrency" },
    { "settings:\n  default_timeout: 0\n", "default_timeout" },
    { "settings:\n  cache: {ttl: -1}\n", "ttl" },
    { "groups:\n  -bad: {}\n", "Invalid agent name" },
    { "agents:\n  'has space':\n    directory: /tmp\n", "Invalid agent name" },
  }
  for _, case in ipairs(cases) do
    local fine, err = cfg_of(case[1])
    ok(not fine, "rejected: " .. case[1])
    has(err.message, case[2])
  end
  ok((cfg_of("settings:\n  cache: {ttl: 0}\n")), "ttl 0 accepted")
  ok((cfg_of("agents:\n  a:\n    directory: /tmp\n    timeout: '600'\n")), "lax integer")
  ok((cfg_of("agents:\n  a: {directory: /tmp, allowed_tools: []}\ngroups:\n  g: {members: [{agent: ghost}]}\n")),
    "explicit [] and dangling member load")
end)

-- A number field that is not a finite number (.nan, .inf, 1e400) would
-- reach the claude command line or a timer as nan/inf, and a NaN never
-- compares equal, so the saved file would not read back as what was
-- loaded: each is refused at load, naming the field.
test("config: a number field refuses NaN and infinities", function()
  local fields = {
    "agents:\n  a:\n    directory: /tmp\n    max_budget_usd: %s\n",
    "settings:\n  default_max_budget_usd: %s\n",
    "settings:\n  tree_budget_usd: %s\n",
    "settings:\n  interrupt_grace_seconds: %s\n",
  }
  for _, f in ipairs(fields) do
    for _, v in ipairs({ ".nan", ".NaN", ".inf", "+.inf", "1e400", "'1e400'" }) do
      local text = f:format(v)
      local fine, err = cfg_of(text)
      ok(not fine, "rejected: " .. text)
      if not fine then has(err.message, "finite number") end
    end
  end
  ok((cfg_of(fields[1]:format("0.25"))), "a finite budget loads")
  -- An integer field refuses what no integer holds instead of reading it
  -- as absent (and so as the default).
  for _, v in ipairs({ ".inf", "1e20", "99999999999999999999", ".nan", "1.5" }) do
    local text = "agents:\n  a:\n    directory: /tmp\n    timeout: " .. v .. "\n"
    local fine, err = cfg_of(text)
    ok(not fine, "rejected: " .. text)
    if not fine then has(err.message, "agents.a.timeout") end
  end
end)

test("config: YAML is loaded safely", function()
  local v, err = core.yaml.load("a: !!python/object/apply:os.system ['id']\n")
  eq(v, nil); has(err, "unsupported tag")
end)

test("config: a second YAML document is refused with its line", function()
  local text = "agents: {}\n---\nagents: {}\n"
  for _, fn in ipairs({ core.yaml.load, core.yaml.outline }) do
    local v, err = fn(text)
    eq(v, nil); has(err, "line 2: the file holds more than one YAML document")
  end
end)

test("config: save/load round trip keeps order, modes and non-ASCII", function()
  local config = require "ad.storage.config"
  local dir = tap.tmpdir()
  local path = dir .. "/sub/agents.yaml"
  local c = config.empty(path)
  c.agents.b = { directory = "/tmp", description = "Описание", timeout = 60,
                 capabilities = json.array(), risky_capabilities = json.array(),
                 allowed_tools = json.array() }
  c.agents.a = { directory = "/tmp", description = "", timeout = 300,
                 capabilities = json.array{ "logs" }, risky_capabilities = json.array() }
  c.agent_names = { "b", "a" }
  assert(config.save(c))
  local back = assert(config.load(path))
  eq(table.concat(back.agent_names, ","), "b,a")
  eq(back.agents.b.description, "Описание")
  eq(#back.agents.b.allowed_tools, 0, "explicit [] kept")
  eq(back.agents.a.capabilities[1], "logs")
  local _, _, mode = core.fs.stat(path)
  eq(mode, 384, "0600")
  local _, _, dmode = core.fs.stat(dir .. "/sub")
  eq(dmode, 448, "0700")
  local text = core.fs.read_file(path)
  ok(not text:find("groups:"), "no empty groups key")
  ok(text:find("agents:") < text:find("settings:"), "agents before settings")
  for _, n in ipairs(core.fs.listdir(dir .. "/sub")) do ok(not n:find("%.tmp$"), "no temp file") end
end)

test("config: a change made by another process drops that agent's cached results", function()
  local config = require "ad.storage.config"
  local state = require "ad.storage.state"
  local dir = tap.tmpdir()
  local path = dir .. "/agents.yaml"
  local c = config.empty(path)
  for _, n in ipairs({ "a", "b" }) do
    c.agents[n] = { directory = "/tmp", description = n, timeout = 300,
                    capabilities = json.array(), risky_capabilities = json.array() }
    c.agent_names[#c.agent_names + 1] = n
  end
  assert(config.save(c))
  local cfg = assert(config.load(path))
  local cache = state.cache(cfg.settings)
  cache:put("ka", "a", "{}"); cache:put("kb", "b", "{}")
  -- another process edits agent a (a new file, as its atomic save makes)
  local other = assert(config.load(path, true))
  other.agents.a.timeout = 42
  assert(config.save(other))
  assert(config.load(path))
  eq(cache:get("ka"), nil, "a's entry dropped")
  eq(cache:get("kb"), "{}", "b's entry kept")
end)

test("tasks: ad.all runs concurrently and keeps order", function()
  local ad = require "agent_dispatch"
  local t0 = core.task.now()
  local out = ad.all({ function() ad.sleep(0.2) return "a" end,
                       function() ad.sleep(0.2) return "b" end,
                       function() error("boom") end })
  ok(core.task.now() - t0 < 0.35, "concurrent")
  eq(out[1].value, "a"); eq(out[2].value, "b"); eq(out[3].ok, false)
end)

test("tasks: cancelling a waiter cancels its children", function()
  local task = require "ad.infra.task"
  local child_cancelled = false
  local parent = core.task.spawn(function()
    return task.all({ function()
      local r, why = core.task.sleep(5)
      child_cancelled = (r == nil and why == "cancelled")
    end })
  end)
  core.task.sleep(0.05)
  parent:cancel()
  local okp = parent:wait()
  eq(okp, false); ok(child_cancelled, "child saw the cancellation")
end)

test("tasks: a cancel that lands while the task is queued to resume is not lost", function()
  local ev = core.task.event()
  local slept
  local t = core.task.spawn(function()
    ev:wait()
    slept = { core.task.sleep(5) }
  end)
  core.task.sleep(0.02)
  ev:set(true)   -- t is now queued to resume ...
  t:cancel()     -- ... and cancelled before it runs
  local t0 = core.task.now()
  t:wait()
  ok(core.task.now() - t0 < 1, "the next wait failed at once")
  eq(slept[1], nil); eq(slept[2], "cancelled")
end)

test("tasks: cancelling a task that never started finishes it", function()
  local t = core.task.spawn(function() error("must not run") end)
  eq(t:cancel(), true)
  local okt, err = t:wait()
  eq(okt, false); eq(err, "cancelled")
  collectgarbage(); collectgarbage()
end)

test("claude.result: non-string values never raise", function()
  local f = require("ad.domain.claude").result({ is_error = { a = 1 }, permission_denials = { { tool_name = { "x" } }, { tool = {} } } })
  eq(f.is_error, true)
  eq(#f.denied_tools, 2)
end)

test("yaml: an alias to the node that contains it does not build a cycle", function()
  local v = core.yaml.load("x: &a [1, *a]\n")
  eq(v.x[1], 1); ok(v.x[2] ~= v.x, "no self-reference"); eq(v.x[2], json.null)
end)

test("tasks: waiting inside coroutine.wrap fails clearly", function()
  local fine, err = pcall(coroutine.wrap(function() core.task.sleep(0.01) end))
  ok(not fine, "raised"); has(tostring(err), "must be called from a task")
end)

test("docs: every exported function of agent_dispatch is documented", function()
  local doc = assert(core.fs.read_file(here .. "../../docs/lua-api.md"))
  for name in pairs(require("agent_dispatch")) do
    has(doc, "### ad." .. name, "docs/lua-api.md")
  end
end)

test("docs: every tool is in the README tool table", function()
  local readme = assert(core.fs.read_file(here .. "../../README.md"))
  local tools = require "ad.tools"
  tools.load_builtin()
  for _, name in ipairs(tools.BUILTIN) do has(readme, "`" .. name .. "`", "README.md") end
end)

test("tools that add keys to a reply leave the shared key orders alone", function()
  -- Records and results share one key order list per kind (jobs.KEYS,
  -- result.KEYS); a reply that adds keys must not append them to that
  -- list, or it grows by a few keys on every such call for the life of
  -- the server, and every later encode walks it.
  local tools = require "ad.tools"
  local jobs = require "ad.storage.jobs"
  local result = require "ad.domain.result"
  local relay = require "ad.domain.relay"
  tools.load_builtin()
  local nres, njobs = #result.KEYS, #jobs.KEYS
  local ref = jobs.create_completed({ agent = "a", task = "t" },
    result.new({ agent = "a", success = true, result = string.rep("x", 100) }))
  local fetch = tools.get("fetch_result")
  for _ = 1, 3 do
    local r = fetch.handler({ ref = ref.id, max_chars = 10 }, {})
    eq(r.truncated, true); eq(r.full_size, 100)
    has(require("ad.infra.json").encode(r), '"truncated":true,"full_size":100', "fetch_result reply")
  end
  eq(#result.KEYS, nres, "result.KEYS grew")
  local rec = jobs.create({ agent = "a", task = "t" })
  local wait = tools.get("dispatch_wait")
  for _ = 1, 2 do
    local r = wait.handler({ job_id = rec.id, timeout_seconds = 0 }, { log = function() end })
    eq(r.timed_out_waiting, true)
  end
  for _ = 1, 2 do relay.mark_awaiting(jobs.get(rec.id)) end
  eq(#jobs.KEYS, njobs, "jobs.KEYS grew")
end)

test("dispatch_wait: a job that ends between reading its record and waiting is seen at once", function()
  local jobs = require "ad.storage.jobs"
  local async = require "ad.domain.async"
  local rec = jobs.create({ agent = "a", task = "t" })
  -- Another process finishes the job just after the waiter read the record.
  local real_get, reads = jobs.get, 0
  jobs.get = function(id)
    local r = real_get(id)
    reads = reads + 1
    if reads == 1 then jobs.finish(id, { agent = "a", success = true, result = "ok" }) end
    return r
  end
  local t0 = core.task.now()
  local ok_, r = pcall(async.wait, rec.id, 3)
  jobs.get = real_get
  ok(ok_, tostring(r))
  eq(r.status, "done")
  local dt = core.task.now() - t0
  ok(dt < 1, "the wait ended at once, not at its timeout (took " .. dt .. " s)")
end)


test("config: a dump of values shared through YAML aliases is bounded", function()
  local lines = { "a: &a [x, x, x, x, x, x, x, x, x, x]" }
  local prev = "a"
  for _, n in ipairs({ "b", "c", "d", "e", "f", "g", "h" }) do
    lines[#lines + 1] = n .. ": &" .. n .. " [" .. string.rep("*" .. prev, 10, ", ") .. "]"
    prev = n
  end
  local v = assert(core.yaml.load(table.concat(lines, "\n") .. "\n"))
  local text, err = core.yaml.dump(v)
  eq(text, nil)
  has(err, "would exceed 64 MiB")
end)

return tap.done()
