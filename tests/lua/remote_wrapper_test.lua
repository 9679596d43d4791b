-- The remote command line of ad.domain.remote, run here by each shell
-- present as the login shell (`SHELL -c CMD`, as sshd does), with the stub claude:
-- the prompt reaches claude's stdin byte for byte, a short text prompt
-- needs no program besides sh and claude, and claude's status and stderr
-- come back unchanged. Needs AD_STUB_DIR (the stub claude's directory).
-- Run: agent-dispatch run tests/lua/remote_wrapper_test.lua
local here = arg[0]:match("(.*/)") or "./"
local tap = dofile(here .. "tap.lua")
local test, eq, ok = tap.test, tap.eq, tap.ok
local core = require "ad.core"
local json = require "ad.infra.json"
local remote = require "ad.domain.remote"

local STUB = assert(os.getenv("AD_STUB_DIR"), "AD_STUB_DIR is not set") .. "/claude"
local tmp = tap.tmpdir()
assert(core.fs.mkdirs(tmp .. "/project", 448))

local function run(argv, env, input)
  local p = assert(core.proc.spawn{ argv = argv, env = env, stdin = input, stdin_keep = input ~= nil,
    timeout = 30 })
  local out = {}
  while true do
    local line = p:read_line()
    if not line then break end
    out[#out + 1] = line
  end
  local info = p:wait()
  p:close()
  return info, out
end

-- A PATH directory holding only `sh` (the shell under test), `claude`
-- and the programs named in extra.
local function bin_dir(name, shell, extra)
  local dir = tmp .. "/bin-" .. name
  local info = run({ "/bin/sh", "-c", 'mkdir -p "$1" && ln -s "$2" "$1/sh" && ln -s "$3" "$1/claude"',
    "x", dir, shell, STUB })
  eq(info.exit_code, 0, "bin dir for " .. name)
  for _, prog in ipairs(extra or {}) do
    eq(run({ "/bin/ln", "-s", assert(core.sys.which(prog)), dir .. "/" .. prog }).exit_code, 0)
  end
  return dir
end

-- Runs the remote command line of a dispatch of prompt by `sh -c`, as
-- sshd does, with PATH; returns the exit info and what the stub read.
local function dispatch(path_dir, prompt, extra_argv)
  local log = tmp .. "/stub.log"
  os.remove(log)
  local claude_argv = { "claude", "-p", "--output-format", "json", "--" }
  for _, a in ipairs(extra_argv or {}) do table.insert(claude_argv, #claude_argv, a) end
  local argv, input = remote.command{ host = "box", directory = tmp .. "/project",
    prompt = prompt, prompt_len = #prompt, env = { "AGENT_DISPATCH_DEPTH=1" },
    claude_argv = claude_argv }
  local info = run({ path_dir .. "/sh", "-c", argv[#argv] },
    { "PATH=" .. path_dir, "STUB_CLAUDE_LOG=" .. log, "HOME=" .. tmp }, input or prompt)
  local f = io.open(log, "rb")
  local entry = f and json.decode((f:read("a"):match("[^\n]+"))) or {}
  if f then f:close() end
  return info, entry
end

local PROMPTS = {
  "hello", "\n", "\n\n", "trailing newline\n", "two\n\n", "\n leading newline",
  "  spaces  \n\ttabs\t", "back\\slash \\n \\\\", "cr\r\nlf\r", "-n", "-e", "%s %d %%",
  "'quotes' \"double\" `id` $(id) ${HOME}", "Ünïcødé ✓ 日本語 🎉", "\255\254 not utf-8 \128",
  string.rep("line of text\n", 300):sub(1, remote.LINE_COPY_MAX),
}

local SHELLS = {}
for _, name in ipairs({ "sh", "dash", "bash", "zsh", "ksh", "busybox" }) do
  local path = core.sys.which(name)
  if path and name == "busybox" then
    -- busybox runs its sh applet only when called as sh: a wrapper script
    -- cannot do that without another sh, so it is left out here.
    path = nil
  end
  if path then SHELLS[#SHELLS + 1] = { name = name, path = path } end
end

for _, sh in ipairs(SHELLS) do
  test(sh.name .. " as the login shell: text prompts reach claude unchanged, with nothing but sh and claude on the PATH", function()
    local dir = bin_dir(sh.name, sh.path)
    for _, prompt in ipairs(PROMPTS) do
      local info, entry = dispatch(dir, prompt)
      eq(info.exit_code, 0, sh.name .. " exit status for " .. string.format("%q", prompt:sub(1, 40)) ..
        " (stderr: " .. tostring(info.stderr) .. ")")
      eq(entry.prompt, prompt, sh.name .. " prompt")
    end
  end)
end

test("input: short text goes as lines, NUL bytes or a longer text as bytes", function()
  local mode, n, input = remote.input("a\nb")
  eq(mode, "l"); eq(n, 2); eq(input, "a\nb\n")
  mode, n, input = remote.input("a\n")
  eq(mode, "l"); eq(n, 2); eq(input, "a\n\n")
  mode, n, input = remote.input("a\0b")
  eq(mode, "c"); eq(n, 3); eq(input, "a\0b")
  mode, n = remote.input(string.rep("x", remote.LINE_COPY_MAX + 1))
  eq(mode, "c"); eq(n, remote.LINE_COPY_MAX + 1)
end)

test("prompts longer than the line copy cross intact (head)", function()
  local dir = bin_dir("head", "/bin/sh", { "head" })
  for _, prompt in ipairs({ string.rep("x", remote.LINE_COPY_MAX + 1),
      string.rep("0123456789abcdef\n", 20000) }) do
    local info, entry = dispatch(dir, prompt)
    eq(info.exit_code, 0, "exit status (stderr: " .. tostring(info.stderr) .. ")")
    eq(#entry.prompt, #prompt, "length")
    ok(entry.prompt == prompt, "prompt of " .. #prompt .. " bytes changed")
  end
end)

test("claude's exit status and stderr pass through; a missing claude is named", function()
  local dir = bin_dir("status", "/bin/sh")
  local info = dispatch(dir, "x [stub:no_result] [stub:exit=3] [stub:stderr=boom]")
  eq(info.exit_code, 3)
  eq(info.stderr, "boom\n")
  local argv = remote.command{ host = "box", directory = tmp .. "/project", prompt = "x",
    prompt_len = 1, claude_argv = { "claude-nowhere", "-p" } }
  info = run({ "/bin/sh", "-c", argv[#argv] }, { "PATH=" .. dir, "HOME=" .. tmp }, "x\n")
  eq(info.exit_code, remote.EXIT_NO_CLAUDE)
  ok(info.stderr:find("claude-nowhere not found on the remote PATH", 1, true), info.stderr)
end)

run({ "/bin/rm", "-rf", tmp })
return tap.done()
