-- agents.yaml edits that keep the text (ad.config_edit, core.yaml.outline)
-- and the unknown-key report (config.unknown_keys).
-- Run: agent-dispatch run tests/lua/config_edit_test.lua
local here = arg[0]:match("(.*/)") or "./"
local tap = dofile(here .. "tap.lua")
local test, eq, ok, has = tap.test, tap.eq, tap.ok, tap.has
local core = require "ad.core"
local json = require "ad.infra.json"
local config = require "ad.storage.config"
local edit = require "ad.storage.config_edit"

local tmpdir = tap.tmpdir

-- Runs a change through config.mutate on a file holding `text`; returns
-- the new text and the warnings.
local function change(text, fn)
  local dir = tmpdir()
  local path = dir .. "/agents.yaml"
  assert(core.fs.write_atomic(path, text, 384))
  local r, err, ws = config.mutate(function(cfg) fn(cfg) return true, true end, path)
  assert(r, err and (err.detail or tostring(err)))
  return core.fs.read_file(path), ws
end

local function agent(dir, extra)
  local a = { directory = dir, description = "", timeout = 300,
              capabilities = json.array(), risky_capabilities = json.array() }
  for k, v in pairs(extra or {}) do a[k] = v end
  return a
end

test("outline: byte offsets after non-ASCII text", function()
  local t = "# é ü\nagents:\n  ä: {directory: /x}\n  b:\n    directory: /y\n"
  local o = assert(core.yaml.outline(t))
  local e = o.keys.agents.value.keys.b
  eq(t:sub(e.kstart + 1, e.kstop), "b")
  local d = e.value.keys.directory
  eq(t:sub(d.value.start + 1, d.value.stop), "/y")
  local f = o.keys.agents.value.keys["ä"].value
  eq(t:sub(f.start + 1, f.stop), "{directory: /x}")
end)

test("outline: a block list ends past the '-' of an empty last item", function()
  local t = "e:\n  - a\n  -\n"
  local o = assert(core.yaml.outline(t))
  local l = o.keys.e.value
  eq(t:sub(l.start + 1, l.stop), "- a\n  -")
end)

test("edit: an entry rewritten whole leaves no line of a list ending in an empty item", function()
  -- The duplicated key makes the edit rewrite the whole entry (edit.apply
  -- on its own: loading refuses the text, so no save gets this far).
  local t = "# kept\nagents:\n  d:\n    directory: /tmp\n    description: x\n" ..
    "    description: y\n    e:\n      -\n"
  local old = config.to_document(config.from_document(
    core.yaml.load((t:gsub("    description: x\n", "", 1))), "/x/agents.yaml"))
  local new = json.decode(json.encode(old))
  new.agents.d.description = "z"
  local out = assert(edit.apply(t, old, new))
  ok(not out:find("\n *%-"), "the list item is left behind:\n" .. out)
  eq(core.yaml.load(out).agents.d.description, "z")
  has(out, "# kept")
end)

test("edit: lone CR line breaks bound an entry rewritten whole", function()
  -- YAML counts "\r" alone as a line break: agent e starts a line of its
  -- own, and rewriting d (duplicated key: the whole entry) must end there.
  local t = "# kept\nagents:\n  d:\n    directory: /tmp\n    description: x\n" ..
    "    description: |\r      y\r\r  e:\r    directory: /tmp\n"
  local old = config.to_document(config.from_document(
    core.yaml.load((t:gsub("    description: x\n", "", 1))), "/x/agents.yaml"))
  local new = json.decode(json.encode(old))
  new.agents.d.description = "z"
  local out = assert(edit.apply(t, old, new))
  local back = assert(config.from_document(assert(core.yaml.load(out)), "/x/agents.yaml"))
  eq(back.agents.d.description, "z")
  ok(back.agents.e, "agent e is lost:\n" .. out)
  has(out, "\r  e:\r    directory: /tmp\n")
  has(out, "# kept")
end)

test("edit: a file with CR or CRLF line breaks is changed in place", function()
  for _, nl in ipairs({ "\r", "\r\n" }) do
    local t = ("# kept\nagents:\n  a:\n    directory: /tmp   # a\n    timeout: 1\n" ..
      "  b:\n    directory: /tmp\n    capabilities:\n      - x\n" ..
      "groups:\n  g:\n    members:\n      - agent: a\n      - agent: b\n"):gsub("\n", nl)
    local saved, ws = change(t, function(cfg)
      cfg.agents.b = nil
      table.remove(cfg.agent_names, 2)
      cfg.groups.g.members[2] = nil
      cfg.agents.a.timeout = 2
      cfg.agents.c = agent("/tmp", { description = "new" })
      cfg.agent_names[#cfg.agent_names + 1] = "c"
    end)
    eq(#ws, 0, "no warning")
    has(saved, "# kept" .. nl .. "agents:" .. nl .. "  a:" .. nl .. "    directory: /tmp   # a" .. nl)
    ok(not saved:find("  b:", 1, true), "b is left:\n" .. saved)
    local back = assert(config.from_document(assert(core.yaml.load(saved)), "/x/agents.yaml"))
    eq(back.agents.a.timeout, 2)
    eq(back.agents.c.description, "new")
    eq(#back.groups.g.members, 1)
  end
end)

test("edit: a field after a literal block and a file without a final newline", function()
  local t = "agents:\n  a:\n    directory: /tmp\n    description: |\n      line one\n      line two\n\n# end"
  local out = change(t, function(cfg) cfg.agents.a.timeout = 5 end)
  eq(out, "agents:\n  a:\n    directory: /tmp\n    description: |\n      line one\n      line two\n" ..
    "    timeout: 5\n\n# end")
  local out2 = change("agents:\n  a:\n    directory: /tmp\n    timeout: 9", function(cfg)
    cfg.agents.a.timeout = 7 end)
  eq(out2, "agents:\n  a:\n    directory: /tmp\n    timeout: 7")
end)

test("edit: lists, multi-line and quoted values read back as written", function()
  local t = "# c\nagents:\n  a:\n    directory: /tmp   # here\n    allowed_tools: [Read]  # only\n"
  local out = change(t, function(cfg)
    cfg.agents.a.allowed_tools = json.array{ "Read", "Grep", "yes" }
    cfg.agents.a.description = "two\nlines: 'quoted' #not a comment"
  end)
  has(out, "# c\nagents:\n  a:\n    directory: /tmp   # here\n    allowed_tools:\n")
  has(out, "  # only\n")
  local back = assert(config.from_document(assert(core.yaml.load(out)), "/x"))
  eq(back.agents.a.description, "two\nlines: 'quoted' #not a comment")
  eq(table.concat(back.agents.a.allowed_tools, ","), "Read,Grep,yes")
end)

test("edit: empty sections, comment-only files and flow entries", function()
  local out = change("# only a comment\n", function(cfg)
    cfg.agents.n = agent("/tmp"); cfg.agent_names = { "n" }
  end)
  eq(out, "# only a comment\nagents:\n  n:\n    directory: /tmp\n    description: \"\"\n    timeout: 300\n")
  local out2 = change("agents: {}  # none yet\nsettings:\n  max_concurrency: 2\n", function(cfg)
    cfg.agents.n = agent("/tmp"); cfg.agent_names = { "n" }
  end)
  eq(out2, "agents:\n  n:\n    directory: /tmp\n    description: \"\"\n    timeout: 300  # none yet\n" ..
    "settings:\n  max_concurrency: 2\n")
  local out3 = change("agents:\n  a: {directory: /tmp}\n  b:\n    directory: /tmp\n", function(cfg)
    cfg.agents.a.timeout = 1
  end)
  eq(out3, "agents:\n  a:\n    directory: /tmp\n    description: \"\"\n    timeout: 1\n" ..
    "  b:\n    directory: /tmp\n")
end)

test("edit: removing the last agent and a group member list", function()
  local t = "agents:\n  a:\n    directory: /tmp\n  # b was here\n  b:\n    directory: /tmp\n" ..
    "groups:\n  g:\n    members:\n    - agent: a\n    - agent: b   # second\n"
  local out = change(t, function(cfg)
    cfg.agents.b = nil; cfg.agent_names = { "a" }
    table.remove(cfg.groups.g.members, 2)
  end)
  eq(out, "agents:\n  a:\n    directory: /tmp\n  # b was here\n" ..
    "groups:\n  g:\n    members:\n    - agent: a\n")
end)

test("a duplicate key is refused where it is, never resolved silently (an edit would drop one)", function()
  local t = "agents:\n  a:\n    directory: /tmp\n    timeout: 1\n    timeout: 2\n  b:\n    directory: /tmp\n"
  local v, err = core.yaml.load(t)
  eq(v, nil)
  has(err, "line 5, column 5: duplicate key 'timeout'")
  v, err = core.yaml.load("agents:\n  a: {directory: /tmp}\n  a: {directory: /etc}\n")
  eq(v, nil)
  has(err, "line 3, column 3: duplicate key 'a'")
  -- The same key in two mappings is no duplicate; nor is one key repeated
  -- through an alias's copy.
  assert(core.yaml.load("agents:\n  a: {directory: /tmp}\n  b: {directory: /tmp}\n"))
  assert(core.yaml.load("x: &m {k: 1}\ny: *m\n"))
  -- A merge key is named as such, not left to read as a field.
  v, err = core.yaml.load("base: &b {directory: /tmp}\nagents:\n  a:\n    <<: *b\n")
  eq(v, nil)
  has(err, "line 4, column 5: merge keys (<<) are not supported")
  assert(core.yaml.load("agents:\n  a: {directory: /tmp, description: '<<'}\n'<<': quoted is a key\n"))
  local dir = tmpdir()
  local path = dir .. "/agents.yaml"
  assert(core.fs.write_atomic(path, t, 384))
  local r, cerr = config.mutate(function(cfg) cfg.agents.a.timeout = 3 return true, true end, path)
  eq(r, nil, "the edit is refused")
  ok(cerr ~= nil)
  eq(core.fs.read_file(path), t, "the file is untouched")
end)

test("edit: a flow top level is rewritten in full with a warning naming the backup", function()
  local out, ws = change("{agents: {a: {directory: /tmp}}}\n", function(cfg) cfg.agents.a.timeout = 4 end)
  eq(#ws, 1)
  has(ws[1], "agents.yaml.bak.1")
  eq(config.from_document(core.yaml.load(out), "/x").agents.a.timeout, 4)
end)

test("edit.apply leaves the text alone when nothing differs", function()
  local t = "agents:\n  a:\n    directory: ~   # odd but kept\n"
  local doc = { agents = { a = { directory = "/x" } } }
  eq(edit.apply(t, doc, doc), t)
end)

test("edit: a member taken out of or added to a group keeps the other members' comments", function()
  local t = "agents:\n  a: {directory: /tmp}\n  b: {directory: /tmp}\n  c: {directory: /tmp}\n" ..
    "groups:\n  g:\n    members:\n      # the first\n      - agent: a   # lead\n        use_for: api\n" ..
    "      - agent: b   # gone soon\n      - agent: c   # stays\n    description: team\n"
  local out = change(t, function(cfg)
    local ms = cfg.groups.g.members
    table.remove(ms, 2)
    ms[#ms + 1] = { agent = "b", use_for = "again" }
    ms[#ms + 1] = { agent = "a", use_for = "" }
  end)
  eq(out, "agents:\n  a: {directory: /tmp}\n  b: {directory: /tmp}\n  c: {directory: /tmp}\n" ..
    "groups:\n  g:\n    members:\n      # the first\n      - agent: a   # lead\n        use_for: api\n" ..
    "      - agent: c   # stays\n      - agent: b\n        use_for: again\n      - agent: a\n" ..
    "    description: team\n")
end)

test("edit: a file that starts with a byte order mark keeps it and its comments", function()
  local out, ws = change("\239\187\191# bom\nagents:\n  a:\n    directory: /tmp\n    timeout: 5   # t\n",
    function(cfg) cfg.agents.a.timeout = 7 end)
  eq(#ws, 0, "edited in place")
  eq(out, "\239\187\191# bom\nagents:\n  a:\n    directory: /tmp\n    timeout: 7   # t\n")
end)

test("unknown_keys: every level, suggestions, permission flag", function()
  local dir = tmpdir()
  local path = dir .. "/agents.yaml"
  assert(core.fs.write_atomic(path, table.concat({
    "agent:", "  x: 1",
    "agents:", "  a:", "    directory: /tmp", "    permision_mode: plan",
    "    allowedTools: [Read]", "    colour: blue",
    "groups:", "  g:", "    member: []", "    members:", "    - agent: a", "      usefor: x",
    "settings:", "  default_permision_mode: plan", "  cache: {ttl: 1, max_bytes: 2, enable: true}", "" }, "\n"), 384))
  local u = assert(config.unknown_keys(path))
  local got = {}
  for _, k in ipairs(u) do
    got[#got + 1] = k.where .. "|" .. k.key .. "|" .. tostring(k.suggestion) .. "|" .. tostring(k.permission)
  end
  eq(table.concat(got, "\n"), table.concat({
    "|agent|agents|false",
    "agents.a|permision_mode|permission_mode|true",
    "agents.a|allowedTools|allowed_tools|true",
    "agents.a|colour|nil|false",
    "groups.g|member|members|false",
    "groups.g.members[0]|usefor|use_for|false",
    "settings|default_permision_mode|default_permission_mode|true",
    "settings.cache|enable|enabled|false" }, "\n"))
  has(config.unknown_key_message(u[2]), "agents.a.permision_mode (did you mean permission_mode?)")
  eq(#assert(config.unknown_keys(dir .. "/missing.yaml")), 0, "no file, no unknown keys")
  assert(core.fs.write_atomic(path, "agents:\n  a:\n    timeout: x\n    alowed_tools: []\n", 384))
  local u2 = assert(config.unknown_keys(path))
  eq(u2[1].key, "alowed_tools", "reported even when the schema fails")
  assert(core.fs.write_atomic(path, "agents: [\n", 384))
  local none, err = config.unknown_keys(path)
  eq(none, nil); eq(err.kind, "yaml")
end)

return tap.done()
