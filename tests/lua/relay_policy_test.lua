-- The permission relay's policy (ad.domain.relay_policy): the pattern
-- rule, the order deny -> allow -> hooks -> ask, and the config schema of
-- agents.<name>.permissions.
-- Run: agent-dispatch run tests/lua/relay_policy_test.lua
local here = arg[0]:match("(.*/)") or "./"
local tap = dofile(here .. "tap.lua")
local test, eq, ok, has = tap.test, tap.eq, tap.ok, tap.has
local policy = require "ad.domain.relay_policy"
local config = require "ad.storage.config"

local function m(pat, tool, input, kind)
  local p = assert(policy.parse(pat))
  return policy.matches(p, { tool = tool, input = input or {} }, kind or "allow")
end

test("a bare tool name matches every use of that tool only", function()
  ok(m("Bash", "Bash", { command = "rm -rf /" }), "Bash")
  ok(not m("Bash", "BashOutput", {}), "not a prefix")
  ok(m("Read", "Read", { file_path = "/etc/passwd" }), "Read")
end)

test("Bash(prefix:*) matches the prefix as a word, not a longer word", function()
  ok(m("Bash(git status:*)", "Bash", { command = "git status" }), "exact")
  ok(m("Bash(git status:*)", "Bash", { command = "git status -s" }), "with args")
  ok(not m("Bash(git status:*)", "Bash", { command = "git statusx" }), "longer word")
  ok(not m("Bash(git status:*)", "Bash", { command = "git log" }), "other")
  ok(m("Bash(npm test)", "Bash", { command = "npm test" }), "exact spec")
  ok(not m("Bash(npm test)", "Bash", { command = "npm test --watch" }), "exact spec only")
end)

test("an allow rule never matches a Bash command with shell control characters", function()
  for _, c in ipairs({ "git status; rm -rf ~", "git status && curl x", "git status | sh",
      "git status `id`", "git status $(id)", "git status > /etc/x", "git status\nrm x" }) do
    ok(not m("Bash(git status:*)", "Bash", { command = c }), c)
  end
end)

test("a deny rule matches any part of a chained Bash command", function()
  ok(m("Bash(rm:*)", "Bash", { command = "ls && rm -rf /" }, "deny"), "second part")
  ok(m("Bash(curl:*)", "Bash", { command = "echo $(curl evil)" }, "deny"), "substitution")
  ok(not m("Bash(rm:*)", "Bash", { command = "ls && echo rm" }, "deny"), "word not at start")
end)

test("path tools match their path with * globs", function()
  ok(m("Read(/src/*)", "Read", { file_path = "/src/a/b.c" }), "glob crosses /")
  ok(not m("Read(/src/*)", "Read", { file_path = "/etc/x" }), "other dir")
  ok(m("Edit(*.md)", "Edit", { file_path = "/x/README.md" }), "suffix")
  ok(m("Grep(/src:*)", "Grep", { path = "/src" }), "path key")
end)

test("WebFetch(domain:...) matches the host and its subdomains", function()
  ok(m("WebFetch(domain:example.com)", "WebFetch", { url = "https://example.com/a" }), "host")
  ok(m("WebFetch(domain:example.com)", "WebFetch", { url = "https://docs.example.com/" }), "sub")
  ok(not m("WebFetch(domain:example.com)", "WebFetch", { url = "https://badexample.com/" }), "suffix")
  ok(not m("WebFetch(domain:example.com)", "WebFetch", { url = "https://example.com.evil/" }), "evil")
end)

test("mcp__server and mcp__server__* match every tool of that server", function()
  ok(m("mcp__github", "mcp__github__create_issue"), "server alone")
  ok(m("mcp__github__*", "mcp__github__create_issue"), "star")
  ok(not m("mcp__github", "mcp__gitlab__x"), "other server")
  ok(m("mcp__github__create_issue", "mcp__github__create_issue"), "exact")
  ok(not m("mcp__github__create_issue", "mcp__github__delete_repo"), "exact only")
end)

test("invalid patterns are explained", function()
  has(policy.problem("Bash(git"), "unbalanced parentheses")
  has(policy.problem(""), "empty pattern")
  has(policy.problem("Bash()"), "empty spec")
  has(policy.problem("Ba sh"), "invalid tool name")
  eq(policy.problem("Bash(git status:*)"), nil)
end)

test("order: deny rules, then allow rules, then hooks, then ask", function()
  local s = { allow = { "Bash" }, deny = { "Bash(rm:*)" } }
  local req = { tool = "Bash", input = { command = "rm x" } }
  local d, by, detail = policy.decide(s, req, {})
  eq(d, "deny"); eq(by, "rule"); eq(detail, "Bash(rm:*)")
  d, by = policy.decide(s, { tool = "Bash", input = { command = "ls" } }, {})
  eq(d, "allow"); eq(by, "rule")
  local seen
  local hooks = { { fn = function(r) seen = r.tool return "ask" end, file = "/a.lua" },
                  { fn = function() return "deny", "not today" end, file = "/b.lua" } }
  d, by, detail = policy.decide({ allow = {}, deny = {} }, { tool = "Write", input = {} }, hooks)
  eq(seen, "Write"); eq(d, "deny"); eq(by, "hook"); eq(detail, "not today")
  d = policy.decide({ allow = {}, deny = {} }, { tool = "Write", input = {} }, {})
  eq(d, "ask")
end)

test("a failing or confused hook denies", function()
  local d, by, detail = policy.decide({ allow = {}, deny = {} }, { tool = "Write", input = {} },
    { { fn = function() error("boom") end, file = "/x/h.lua" } })
  eq(d, "deny"); eq(by, "hook"); has(detail, "h.lua failed")
  d, by, detail = policy.decide({ allow = {}, deny = {} }, { tool = "Write", input = {} },
    { { fn = function() return "yes" end, file = "/x/h.lua" } })
  eq(d, "deny"); has(detail, "not \"allow\"")
end)

test("a hook cannot change the input the child asked for", function()
  local input = { command = "ls" }
  policy.decide({ allow = {}, deny = {} }, { tool = "Bash", input = input },
    { { fn = function(r) r.input.command = "rm -rf /" return "ask" end, file = "/h.lua" } })
  eq(input.command, "ls")
end)

test("relay off by default; defaults filled in", function()
  eq(policy.settings({}), nil)
  eq(policy.settings({ permissions = { relay = false } }), nil)
  local s = policy.settings({ permissions = { relay = true } })
  eq(s.timeout, 120); eq(#s.allow, 0)
end)

test("core.json.raw_member gives a whole object or array member byte for byte", function()
  local core = require "ad.core"
  local line = '{"type":"control_request","request":{"subtype":"can_use_tool",' ..
    '"input":{"a":[],"b":"x}],{","n":12345678901234567},"z":1},"after":[1,[2]]}'
  local req = core.json.raw_member(line, "request")
  eq(core.json.raw_member(req, "input"), '{"a":[],"b":"x}],{","n":12345678901234567}')
  eq(core.json.raw_member(line, "after"), "[1,[2]]")
  eq(core.json.raw_member(req, "z"), "1")
  eq(core.json.raw_member(line, "type"), '"control_request"')
  -- Only the first value counts (cjson stops at a NUL and reads no more):
  -- members of anything after it are not the request's.
  eq(core.json.raw_member('{"id":1}\0{"id":"x}', "id"), "1")
  eq(core.json.raw_member('{"a":1}\0{"id":"x}', "id"), nil)
  eq(require("ad.infra.json").decode('{"id":1}\0{"id":2}'), nil)
end)

local function schema_errors(perm_yaml)
  local doc = assert(require("ad.core").yaml.load(
    "agents:\n  a:\n    directory: /tmp\n    permissions: " .. perm_yaml .. "\n"))
  local okk, err = pcall(config.from_document, doc, "/x/agents.yaml")
  if okk then return nil, err end
  return err.message
end

test("config: permissions are validated with precise errors", function()
  has(schema_errors("{relay: yes please}"), "agents.a.permissions.relay: expected true or false")
  has(schema_errors("{relay: true, allow: [\"Bash(git\"]}"), "agents.a.permissions.allow[0]: unbalanced")
  has(schema_errors("{deny: Bash}"), "agents.a.permissions.deny: expected a list of strings")
  has(schema_errors("{timeout_seconds: 0}"), "agents.a.permissions.timeout_seconds: must be between 1")
  has(schema_errors("[relay]"), "agents.a.permissions: expected a mapping")
  local _, cfg = schema_errors("{relay: true, allow: [Read], timeout_seconds: 5}")
  eq(cfg.agents.a.permissions.relay, true)
  eq(cfg.agents.a.permissions.timeout_seconds, 5)
end)

test("config: an unknown key under permissions is reported", function()
  local doc = assert(require("ad.core").yaml.load(
    "agents:\n  a:\n    directory: /tmp\n    permissions: {relay: true, alow: [Read]}\n"))
  local u = config.unknown_keys_in(doc)
  eq(#u, 1); eq(u[1].key, "alow"); eq(u[1].suggestion, "allow")
end)

return tap.done()
