--- What the project directory of a remote agent holds, in one ssh round
--- trip: a small POSIX sh script on the far side prints whether the
--- directory exists and is readable, its top-level entries (names and
--- kinds: enough for the stack and database markers) and the first bytes
--- of the few files introspection reads (CLAUDE.md, README.md, .mcp.json,
--- .claude/settings.local.json, pyproject.toml, package.json). The answer
--- is kept briefly per host and directory, and a host that did not answer
--- is not asked again for that long: listing agents stays fast when a
--- host is down. Nothing of the project is executed.
---
--- The result is a source for ad.domain.introspect: health(), has(name,
--- isdir), read(rel, max), stacks(), dbs().
local core = require "ad.core"
local util = require "ad.infra.util"
local remote = require "ad.domain.remote"

local M = {}

--- Seconds an answer (or a host's silence) is kept.
M.TTL = 30
--- Seconds ssh may take to connect for a probe (dispatches use the
--- configured settings.ssh_connect_timeout).
M.CONNECT_TIMEOUT = 3
--- Seconds the whole probe may take.
M.TIMEOUT = 10
--- Bytes of each file fetched (previews need far less; an .mcp.json
--- larger than this is not read, as locally past 1 MiB).
M.MAX_FILE = 256 * 1024
--- Top-level entries listed at most.
M.MAX_ENTRIES = 2000

M.FILES = { "CLAUDE.md", "README.md", ".mcp.json", ".claude/settings.local.json",
  "pyproject.toml", "package.json" }

-- $1 directory, $2 byte cap, $3 entry cap, then the files. Output: one
-- status line (ok | missing | unreadable), "E kind name" lines, then per
-- file present "F truncated name", its first bytes in base64 (output
-- lines are text: any byte crosses intact) and a "." line. A file
-- that is a symbolic link is skipped (a link out of the project is never
-- followed locally either); names with a newline are skipped.
M.SCRIPT = [=[
d=$1 max=$2 lim=$3; shift 3
case $d in "~") d=$HOME ;; "~/"*) d=$HOME/${d#"~/"} ;; esac
if [ ! -d "$d" ]; then echo missing; exit 0; fi
if ! cd -- "$d" 2>&-; then echo unreadable; exit 0; fi
if [ ! -r . ]; then echo unreadable; exit 0; fi
echo ok
nl='
'
i=0
for e in * .[!.]* ..?*; do
  [ -e "$e" ] || [ -h "$e" ] || continue
  case $e in *"$nl"*) continue ;; esac
  i=$((i + 1)); [ "$i" -le "$lim" ] || break
  if [ -h "$e" ]; then k=link; elif [ -d "$e" ]; then k=dir; elif [ -f "$e" ]; then k=file; else k=other; fi
  printf 'E %s %s\n' "$k" "$e"
done
for f in "$@"; do
  if [ -f "$f" ] && [ ! -h "$f" ] && [ -r "$f" ]; then
    t=0; [ "$(head -c "$((max + 1))" -- "$f" | wc -c)" -gt "$max" ] && t=1
    printf 'F %d %s\n' "$t" "$f"
    head -c "$max" -- "$f" | base64
    echo .
  fi
done
]=]

local B64 = {}
for i = 1, 64 do
  B64[("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"):byte(i)] = i - 1
end

--- The bytes of base64 text (line breaks ignored), or nil when it is not.
function M.unbase64(t)
  t = t:gsub("[\r\n]", "")
  if #t % 4 ~= 0 then return nil end
  local out = {}
  for i = 1, #t, 4 do
    local a, b, c, d = t:byte(i, i + 3)
    local va, vb = B64[a], B64[b]
    local vc, vd = c == 61 and 0 or B64[c], d == 61 and 0 or B64[d]
    if not (va and vb and vc and vd) then return nil end
    local n = va << 18 | vb << 12 | vc << 6 | vd
    local bytes = string.char(n >> 16 & 255, n >> 8 & 255, n & 255)
    if c == 61 then bytes = bytes:sub(1, 1) elseif d == 61 then bytes = bytes:sub(1, 2) end
    out[#out + 1] = bytes
  end
  return table.concat(out)
end

--- Parses the probe's output lines: {status=, entries = {name = kind},
--- files = {rel = {data, truncated}}} or nil when it is not one.
function M.parse(lines)
  local status = lines[1]
  if status ~= "ok" and status ~= "missing" and status ~= "unreadable" then return nil end
  local out = { status = status, entries = {}, files = {} }
  local i = 2
  while i <= #lines do
    local line = lines[i]
    i = i + 1
    local kind, name = line:match("^E (%a+) (.+)$")
    local t, rel = line:match("^F ([01]) (.+)$")
    if kind then
      out.entries[name] = kind
    elseif t then
      local b = {}
      while i <= #lines and lines[i] ~= "." do b[#b + 1] = lines[i]; i = i + 1 end
      if lines[i] ~= "." then return nil end
      i = i + 1
      local data = M.unbase64(table.concat(b))
      if not data then return nil end
      out.files[rel] = { data, t == "1" }
    elseif line ~= "" then
      return nil
    end
  end
  return out
end

local cache = {}      -- host .. "\0" .. dir -> {at, source}
local down = {}       -- host -> {at, message}

--- For tests and `doctor`: forget what was learnt.
function M.forget() cache, down = {}, {} end

local function source(probe, err, dir)
  local s = { remote = true, error = err, directory = dir }
  function s.health()
    if not probe then return "UNREACHABLE" end
    if probe.status == "ok" then return true end
    if probe.status == "missing" then return false end
    return "UNREADABLE"
  end
  function s.has(name, isdir)
    if not probe then return false end
    local f = probe.files[name]
    if f and not isdir then return true end
    return probe.entries[name] == (isdir and "dir" or "file")
  end
  function s.read(rel, max)
    local f = probe and probe.files[rel]
    if not f then return nil end
    local data, cut = f[1], f[2]
    if max and #data > max then return data:sub(1, max), true end
    return data, cut
  end
  function s.stacks() return probe and core.project.stacks_of(probe.entries) or {} end
  function s.dbs() return probe and core.project.dbs_of(probe.entries) or {} end
  return s
end

-- Runs cmd (one string for the remote login shell) on host over ssh,
-- sharing the connection when the control directory is usable: the
-- lines it printed and its exit info (nil: the task was cancelled), or
-- nil and why it could not start. spawn: core.proc.spawn options.
local function ssh_lines(host, cmd, connect_timeout, spawn)
  local path = remote.ssh_path()
  if not path then return nil, "ssh not found in PATH" end
  local h = assert(remote.parse_host(host))
  local argv = { path }
  for _, a in ipairs(remote.ssh_options(h, { control_dir = remote.ensure_control_dir(),
      connect_timeout = connect_timeout })) do
    argv[#argv + 1] = a
  end
  argv[#argv + 1] = "--"
  argv[#argv + 1] = h.dest
  argv[#argv + 1] = cmd
  local within = spawn.answer_within
  spawn.answer_within = nil
  spawn.argv, spawn.grace = argv, remote.KILL_GRACE
  local p, msg = core.proc.spawn(spawn)
  if not p then return nil, msg end
  -- answer_within: seconds for the first line (connected, logged in, the
  -- script started); ssh's ConnectTimeout does not cover a host that
  -- accepts the connection and then stalls.
  local answered, silent = false, false
  local dog = within and core.task.spawn(function()
    if core.task.sleep(within) and not answered then
      silent = true
      p:kill(true)
    end
  end)
  local lines = {}
  while true do
    local line = p:read_line()
    if not line then break end
    answered = true
    lines[#lines + 1] = line
  end
  local info = p:wait()
  if dog then dog:cancel() end
  p:close()
  if info and silent then info.timed_out, info.silent = true, true end
  return lines, info
end
M.ssh_lines = ssh_lines

local function run_probe(agent, settings)
  local words = { "exec", "sh", "-c", remote.quote(M.SCRIPT), "agent-dispatch",
    remote.quote(agent.directory), tostring(M.MAX_FILE), tostring(M.MAX_ENTRIES) }
  for _, f in ipairs(M.FILES) do words[#words + 1] = remote.quote(f) end
  local timeout = math.min(M.CONNECT_TIMEOUT, (settings and settings.ssh_connect_timeout) or M.CONNECT_TIMEOUT)
  local lines, info = ssh_lines(agent.host, table.concat(words, " "), timeout,
    { timeout = M.TIMEOUT, max_output = 2 * M.MAX_FILE * #M.FILES + 256 * M.MAX_ENTRIES,
      answer_within = M.CONNECT_TIMEOUT })
  if not lines then return nil, info end
  if not info then return nil, "cancelled" end
  local probe = info.exit_code == 0 and not info.timed_out and M.parse(lines)
  if probe then return probe end
  local why = remote.ssh_error_text(info.stderr)
  if info.silent then
    why = "no answer within " .. M.CONNECT_TIMEOUT .. "s"
  elseif info.timed_out then
    why = "no answer within " .. M.TIMEOUT .. "s"
  end
  return nil, why ~= "" and why or ("ssh exited with status " .. tostring(info.exit_code))
end

-- `doctor` on a host: where claude is, its version, its login state.
M.HOST_SCRIPT = [=[
p=$(command -v claude) || { echo claude-missing; exit 0; }
echo "claude $p"
echo "version $(claude --version 2>&1 | head -n 1)"
echo auth
claude auth status 2>&1 | head -c 65536
]=]

--- One round trip to host (doctor): {path=, version=, auth = decoded
--- `claude auth status` or nil} (path nil: claude is not on the PATH
--- there), or nil, the ssh error text, and true when the host answered
--- but refused a non-interactive login.
function M.check_host(host, settings)
  local json = require "ad.infra.json"
  local lines, info = ssh_lines(host, "exec sh -c " .. remote.quote(M.HOST_SCRIPT),
    (settings and settings.ssh_connect_timeout) or remote.CONNECT_TIMEOUT, { timeout = 30 })
  if not lines then return nil, info end
  if not info or info.timed_out or info.exit_code ~= 0 or #lines == 0 then
    local why = info and remote.ssh_error_text(info.stderr) or "cancelled"
    if info and info.timed_out then why = "no answer within 30s" end
    return nil, why ~= "" and why or "ssh exited with status " .. tostring(info and info.exit_code),
      why:find("Permission denied", 1, true) ~= nil
  end
  if lines[1] == "claude-missing" then return {} end
  local r = { path = lines[1]:match("^claude (.*)$"), version = (lines[2] or ""):match("^version (.*)$") }
  local rest = {}
  for i = 4, #lines do rest[#rest + 1] = lines[i] end
  local ok, st = pcall(json.decode, table.concat(rest, "\n"))
  if ok and type(st) == "table" then r.auth = st end
  return r
end

--- Probes the remote agents among agents (a list of config entries) that
--- nothing is known of, all at once: a listing of N agents on N hosts
--- that do not answer waits CONNECT_TIMEOUT once, not N times. Later
--- M.source calls find the answers.
function M.prefetch(agents, settings)
  local tasks, seen = {}, {}
  for _, a in ipairs(agents) do
    local key = a.host and a.host .. "\0" .. a.directory
    if key and not seen[key] then
      seen[key] = true
      -- (M.source answers at once what it knows already)
      tasks[#tasks + 1] = core.task.spawn(function() pcall(M.source, a, settings) end)
    end
  end
  for _, t in ipairs(tasks) do t:wait() end
end

--- The introspection source of a remote agent (see the module comment).
function M.source(agent, settings)
  local key = agent.host .. "\0" .. agent.directory
  local now = core.task.now()
  local hit = cache[key]
  if hit and now - hit.at < M.TTL then return hit.source end
  local d = down[agent.host]
  if d and now - d.at < M.TTL then return source(nil, d.message, agent.directory) end
  local probe, err = run_probe(agent, settings)
  if not probe then
    down[agent.host] = { at = now, message = err }
    return source(nil, err, agent.directory)
  end
  down[agent.host] = nil
  local s = source(probe, nil, agent.directory)
  cache[key] = { at = now, source = s }
  return s
end

return M
