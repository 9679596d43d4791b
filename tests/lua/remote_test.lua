-- ad.domain.remote: ssh destinations, remote directories, HOST:DIR, and the
-- quoting of every word of a remote command line, checked by real shells
-- (each one must read the quoted word back as exactly the original bytes).
-- Run: agent-dispatch run tests/lua/remote_test.lua
local here = arg[0]:match("(.*/)") or "./"
local tap = dofile(here .. "tap.lua")
local test, eq, ok = tap.test, tap.eq, tap.ok
local core = require "ad.core"
local remote = require "ad.domain.remote"
local probe = require "ad.domain.remote_probe"

local HOSTILE = {
  "plain", "", "it's", "'", "''", "'\\''", "\"", "$HOME", "${HOME}", "$(id)", "`id`",
  "a;b", "a|b", "a&b", "a>b", "<a", "a b\tc", "line1\nline2", "\r\n", "*", "?", "[a]",
  "~", "~root", "!", "#comment", "\\", "\\'", "-n", "--", "-e 'x'", "%s%n",
  "Ünïcødé ✓ 日本語 🎉", "\127\1\2", string.rep("'$(x)`", 1000),
}

-- 0 when shell sh reads quote(s) back as s: the original reaches the
-- script as $1 (never parsed), the quoted form as code.
local function reads_back(shell, s)
  local p = assert(core.proc.spawn{ argv = { shell, "-c", 'test "$1" = ' .. remote.quote(s), "x", s } })
  while p:read_line() do end
  local info = p:wait()
  p:close()
  return info.exit_code == 0
end

for _, shell in ipairs({ "sh", "dash", "bash", "zsh", "ksh", "busybox" }) do
  local path = core.sys.which(shell)
  if path and shell ~= "busybox" then
    test("quote: " .. shell .. " reads every hostile string back unchanged", function()
      for _, s in ipairs(HOSTILE) do
        ok(reads_back(path, s), shell .. " changed " .. string.format("%q", s))
      end
    end)
  end
end

test("parse_host: destinations ssh's config knows, and refusals", function()
  local h = assert(remote.parse_host("builder"))
  eq(h.dest, "builder"); eq(h.port, nil)
  h = assert(remote.parse_host("me@gpu-01.example.com:2222"))
  eq(h.dest, "me@gpu-01.example.com"); eq(h.port, 2222); eq(h.user, "me")
  h = assert(remote.parse_host("box:22"))
  eq(h.dest, "box"); eq(h.port, 22)
  for _, bad in ipairs({ "", "-oProxyCommand=x", "a b", "a;b", "a$(id)", "a`id`", "a'b", "a\nb",
      "user@-x", "-u@h", "@h", "h:0", "h:65536", "h:", "a/b", "[::1]", "a|b", "a*", "h\0" }) do
    ok(remote.parse_host(bad) == nil, "accepted " .. string.format("%q", bad))
  end
end)

test("dir_problem: absolute or ~/, no control characters", function()
  for _, good in ipairs({ "/srv/api", "~", "~/src/api", "/it's $(here)" }) do
    eq(remote.dir_problem(good), nil, good)
  end
  for _, bad in ipairs({ "", "relative", "./x", "~root/x", "/a\nb", "/a\0b", "/a\27b" }) do
    ok(remote.dir_problem(bad), "accepted " .. string.format("%q", bad))
  end
end)

test("split_target: HOST:DIR only when the host part has no '/'", function()
  local h, d = remote.split_target("builder:~/src/api")
  eq(h, "builder"); eq(d, "~/src/api")
  h, d = remote.split_target("me@box:2222:/srv/x")
  eq(h, "me@box:2222"); eq(d, "/srv/x")
  for _, localpath in ipairs({ "./a:b", "/x:y", "a/b:c", "~:x", "plain", "host:" }) do
    eq(remote.split_target(localpath), nil, localpath)
  end
end)

test("command: ssh options first, -- before the destination, one quoted remote word", function()
  local argv, input = remote.command{ ssh = "/usr/bin/ssh", host = "me@box:2222", directory = "/srv/it's",
    prompt = "two\nlines", env = { "AGENT_DISPATCH_DEPTH=1" }, control_dir = "/run/x",
    claude_argv = { "claude", "-p", "--model", "m$(id)", "--" } }
  eq(argv[1], "/usr/bin/ssh")
  local joined = table.concat(argv, " ", 1, #argv - 1)
  ok(joined:find("-o BatchMode=yes", 1, true), joined)
  ok(joined:find("-o ControlPath=/run/x/%C", 1, true), joined)
  ok(joined:find("-p 2222", 1, true), joined)
  ok(not joined:find("StrictHostKeyChecking", 1, true), "host-key checking is never changed")
  eq(argv[#argv - 2], "--"); eq(argv[#argv - 1], "me@box")
  local cmd = argv[#argv]
  ok(cmd:find("^set %-%- '/srv/it'\\''s' 'l' '2' 'AGENT_DISPATCH_DEPTH=1' '%-%-' 'claude' '%-p' " ..
    "'%-%-model' 'm%$%(id%)' '%-%-'\n"), cmd:sub(1, 120))
  eq(cmd:sub(-#remote.WRAPPER), remote.WRAPPER, "the wrapper follows")
  ok(not cmd:find("two", 1, true), "the prompt is not on the command line")
  eq(input, "two\nlines\n")
end)

test("forwarded: only the depth and the trace context cross, by exact name", function()
  local out = remote.forwarded({ "HOME=/root", "AGENT_DISPATCH_DEPTH=2", "ANTHROPIC_API_KEY=k",
    "AGENT_DISPATCH_TRACE=t:s::", "AGENT_DISPATCH_CONFIG=/x", "AGENT_DISPATCH_TRACES_DIR=/local/traces",
    "AGENT_DISPATCH_TRACE_SECRET=s", "AGENT_DISPATCH_TRACE_FILE=/local/ctx" })
  eq(table.concat(out, ","), "AGENT_DISPATCH_DEPTH=2,AGENT_DISPATCH_TRACE=t:s::")
end)

test("probe output: parsed, base64 files intact, anything else refused", function()
  eq(probe.unbase64("aGk="), "hi"); eq(probe.unbase64("aGVsbG8h"), "hello!"); eq(probe.unbase64("YQ=="), "a")
  eq(probe.unbase64(""), ""); eq(probe.unbase64("a"), nil); eq(probe.unbase64("a!=="), nil)
  local p = assert(probe.parse({ "ok", "E file CLAUDE.md", "E dir migrations", "F 0 CLAUDE.md", "IyBY", "AP8=", "." }))
  eq(p.status, "ok"); eq(p.entries["CLAUDE.md"], "file"); eq(p.entries.migrations, "dir")
  eq(p.files["CLAUDE.md"][1], "# X\0\255"); eq(p.files["CLAUDE.md"][2], false)
  eq(probe.parse({ "missing" }).status, "missing")
  eq(probe.parse({ "bogus" }), nil)
  eq(probe.parse({ "ok", "F 1 x", "aGk=" }), nil, "an unterminated file")
  eq(probe.parse({ "ok", "garbage" }), nil)
end)

return tap.done()
