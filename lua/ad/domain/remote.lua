--- Agents on other machines, over OpenSSH: what a `host:` means, the ssh
--- command line of a dispatch, and the small POSIX-shell wrapper that runs
--- claude on the far side.
---
--- Nothing here opens a connection of its own: the runner spawns the argv
--- built here through core.proc like a local claude (same limiter, timeout,
--- group kill), and ad.domain.remote_probe runs the one-round-trip probe.
---
--- The remote command is one string for the remote user's login shell
--- (POSIX sh, bash, zsh, dash, ksh): every element single-quoted, so no
--- value - directory, argv element, environment value - is ever read by
--- that shell as syntax. The prompt never appears on it: it follows on
--- stdin, its size given on the command line, and the wrapper hands
--- exactly the prompt to claude's stdin. The rest of ssh's stdin stays
--- open until the dispatch ends; when it closes (the local ssh was
--- killed: timeout, cancel, shutdown, Ctrl-C, or the connection broke)
--- the wrapper's watcher signals the whole remote process group (sshd made
--- the remote shell a session leader), so nothing outlives the dispatch.
local core = require "ad.core"
local util = require "ad.infra.util"
local result = require "ad.domain.result"

local M = {}

-- ----------------------------------------------------------- validation --

local function bad_char(s)
  -- whitespace, control characters and everything a shell or ssh would
  -- read as syntax (quotes, $, `, ;, &, |, <, >, (, ), *, ?, [, ], {, },
  -- ~, !, #, \, %, =, comma, /)
  return s:find("[^%w%.%-_]")
end

--- The parts of an ssh destination: {dest = "user@host" or "host",
--- user =, host =, port = number or nil}, or nil and why it is refused.
--- Accepted: `name` (a Host of ~/.ssh/config), `user@host`,
--- `user@host:port` and `host:port`. No leading '-', no whitespace,
--- control characters or shell metacharacters.
function M.parse_host(s)
  if type(s) ~= "string" or s == "" then return nil, "must be a non-empty string" end
  if s:sub(1, 1) == "-" then return nil, "must not start with '-'" end
  local rest, port = s:match("^(.*):(%d+)$")
  if rest then
    port = math.tointeger(tonumber(port))
    if not port or port < 1 or port > 65535 then return nil, "port must be 1-65535" end
  else
    rest = s
  end
  local user, host = rest:match("^([^@]*)@(.*)$")
  if not user then host = rest end
  if user and (user == "" or bad_char(user) or user:sub(1, 1) == "-") then
    return nil, "invalid user name " .. util.repr(user) ..
      " (letters, digits, '.', '-', '_')"
  end
  if host == "" or bad_char(host) or host:sub(1, 1) == "-" then
    return nil, "invalid host name " .. util.repr(host) ..
      " (letters, digits, '.', '-', '_'; use a Host alias of ~/.ssh/config for anything else)"
  end
  return { dest = user and (user .. "@" .. host) or host, user = user, host = host, port = port }
end

--- nil when dir can be the directory of an agent on another host
--- (absolute, `~` or `~/...`, no control characters), else why not.
function M.dir_problem(dir)
  if type(dir) ~= "string" or dir == "" then return "must be a non-empty string" end
  if dir:find("[%z\1-\31\127]") then return "must not contain control characters" end
  if not (dir:sub(1, 1) == "/" or dir == "~" or dir:sub(1, 2) == "~/") then
    return "must be absolute or start with '~/' on the remote host (got " .. util.repr(dir) .. ")"
  end
  return nil
end

--- `HOST:DIR` as the CLI takes it, when the part before the first ':' has
--- no '/' (a local path such as ./a:b or /x:y stays local): host, dir.
--- A `user@host:port:dir` form is read with the port.
function M.split_target(s)
  if type(s) ~= "string" then return nil end
  local host, port, dir = s:match("^([^/:]+):(%d+):(.*)$")
  if host then return host .. ":" .. port, dir end
  host, dir = s:match("^([^/:]+):(.*)$")
  if host and host ~= "" and dir ~= "" and host ~= "~" and host:sub(1, 1) ~= "." then
    return host, dir
  end
  return nil
end

-- ------------------------------------------------------------- quoting --

--- s single-quoted for a POSIX shell: 'it'\''s'. Everything between
--- single quotes is literal, so this is the only rule.
function M.quote(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

-- ------------------------------------------------------------- command --

--- Seconds ssh waits for a connection (settings.ssh_connect_timeout).
M.CONNECT_TIMEOUT = 10

--- The exit status of the wrapper when the directory is missing, and the
--- shell's when claude is not on the remote PATH (the wrapper adds a
--- line saying so; no probe before the run, which would cost a fork).
M.EXIT_NO_DIR, M.EXIT_NO_CLAUDE = 96, 127

-- What both wrappers do first: the words, the environment, the directory.
local WRAPPER_PRELUDE = [=[
d=$1 m=$2 n=$3; shift 3
while [ "$#" -gt 0 ] && [ "$1" != -- ]; do export "$1"; shift; done
shift
case $d in "~") d=$HOME ;; "~/"*) d=$HOME/${d#"~/"} ;; esac
if ! cd -- "$d"; then
  printf 'agent-dispatch: remote directory does not exist or is not accessible: %s\n' "$d" >&2
  exit 96
fi
]=]

-- The wrapper, run by the remote login shell itself (no second shell to
-- start: it is written for any POSIX shell, and the login shell must be
-- one) after `set -- DIR MODE N K=V... -- ARGV...`. $1 directory ('~'
-- expanded here: the quoting keeps the login shell from doing it), then
-- how the prompt arrives (M.input): MODE `l`,
-- N lines (the local side adds a newline after the prompt; the last line
-- is passed on without it), copied by the shell's own read and printf;
-- MODE `c`, N bytes copied by head. Then exported variables up to '--',
-- then claude's argv. fd 3 keeps ssh's stdin, fd 4 its stderr (the
-- wrapper's own stderr is closed: sh would report a killed job there).
--
-- One pipeline: its left side copies the prompt into claude's stdin and
-- closes it, then leaves a watcher in the background and exits; its right
-- side is claude itself (the shell execs it, no subshell). The watcher
-- holds neither stdout nor stderr, so nothing waits for it: it reads the
-- rest of ssh's stdin, which ends when the local side closes it (the
-- answer is in), when the local ssh is gone (timeout, cancel, shutdown,
-- Ctrl-C, a broken connection) or when the wrapper has exited (sshd then
-- closes the session's stdin). Either way it signals the whole remote
-- process group (sshd made the wrapper a session leader): TERM, as a
-- local dispatch does to what claude leaves behind, and KILL 2 s later
-- for what ignored it (the watcher itself lives those 2 s, holding
-- nothing of the session). The left side ignores SIGPIPE, so a claude that
-- exits without reading its input still gets its watcher. The wrapper
-- passes claude's status on. The shell opens /dev/null as the stdin of
-- the background watcher (which then reads fd 3): a host where /dev/null
-- cannot be opened is not one claude's tools can run on either.
M.WRAPPER = WRAPPER_PRELUDE .. [=[
exec 3<&0 0<&- 4>&2 2>&-
{
  trap '' PIPE
  if [ "$m" = l ]; then
    while [ "$n" -gt 1 ] && IFS= read -r l; do printf '%s\n' "$l"; n=$((n - 1)); done
    [ "$n" -eq 1 ] && IFS= read -r l && printf '%s' "$l"
  else
    LC_ALL=C head -c "$n"
  fi
  exec >&- 4>&-
  {
    while IFS= read -r _; do :; done
    trap '' TERM
    kill -TERM 0
    sleep 2
    kill -KILL 0
  } <&3 &
} <&3 | "$@" 2>&4 3<&- 4>&-
s=$?
[ "$s" -eq 127 ] && printf 'agent-dispatch: %s not found on the remote PATH (%s)\n' "$1" "$PATH" >&4
exit "$s"
]=]

-- The wrapper of the live transport (MODE `L`, same `set --` words): the
-- claude child reads further messages on its stdin, so it gets all of
-- ssh's stdin, and the end of it (the local side closes it after the
-- turn's result, or the connection is gone) ends claude after its turn;
-- the group is signalled 3 s after that end unless claude is done first.
-- The pipeline's left side only starts the copier of ssh's stdin in the
-- background (holding none of the session's output) and exits, so the
-- wrapper waits for claude alone: its exit status never depends on the
-- copier ending. When claude exits the wrapper TERMs what is left of the
-- group (the copier, which resets TERM to its default action first,
-- anything claude left behind), leaves a KILL of the group 2 s later in
-- the background (for what ignored the TERM, or missed it: a shell drops
-- a TERM that arrives between its fork and the reset of the trap it
-- inherited) and exits with claude's status. The wrapper catches TERM (so
-- its children do not ignore it, and the copier's TERM after the end of
-- stdin ends claude, not the wrapper) and ignores it once claude is done.
M.WRAPPER_LIVE = WRAPPER_PRELUDE .. [=[
exec 3<&0 0<&- 4>&2 2>&-
trap : TERM
{
  {
    trap - TERM
    cat
    exec >&-
    sleep 3
    trap '' TERM
    kill -TERM 0
    sleep 2
    kill -KILL 0
  } <&3 4>&- &
} | {
  exec 3<&-
  "$@" 2>&4 4>&-
}
s=$?
[ "$s" -eq 127 ] && printf 'agent-dispatch: %s not found on the remote PATH (%s)\n' "$1" "$PATH" >&4
trap '' TERM
kill -TERM 0
{ sleep 2; kill -KILL 0; } >/dev/null 2>&1 3<&- 4>&- &
exit "$s"
]=]

--- Longest prompt copied line by line by the shell (one read(2) per byte
--- there: cheaper than starting head up to about this size).
M.LINE_COPY_MAX = 4096

--- How the prompt crosses: mode, count and the bytes for ssh's stdin.
--- Text up to M.LINE_COPY_MAX bytes without NUL goes as lines ("l", the
--- number of lines, a newline added so that the last one ends); anything
--- else as bytes ("c", the length, copied by head).
function M.input(text)
  if #text <= M.LINE_COPY_MAX and not text:find("\0", 1, true) then
    local _, nl = text:gsub("\n", "")
    return "l", nl + 1, text .. "\n"
  end
  return "c", #text, text
end

--- Environment passed to the remote side: only what belongs to the
--- dispatch, not to this machine.
--- AGENT_DISPATCH_DEPTH bounds recursion across hosts too;
--- AGENT_DISPATCH_TRACE carries the trace context. Exact names: any other
--- variable of this machine (a traces directory, a secret that happens to
--- share a prefix) stays here.
M.FORWARDED_ENV = { "AGENT_DISPATCH_DEPTH", "AGENT_DISPATCH_TRACE" }

--- Longest control directory name: a socket path is at most 107 bytes,
--- and ssh adds "/" + 40 (%C) + 17 (a temporary suffix) to it.
M.MAX_CONTROL_DIR = 107 - 58

--- The private directory of ssh's control sockets (0700; created here,
--- refused when another user owns it or others can enter it):
--- $AGENT_DISPATCH_SSH_DIR, else $XDG_RUNTIME_DIR/agent-dispatch-ssh,
--- else ~/.cache/agent-dispatch/ssh, else (when those are too long for a
--- socket path) /tmp/agent-dispatch-ssh-UID.
function M.control_dir()
  local base = os.getenv("AGENT_DISPATCH_SSH_DIR")
  if base and base ~= "" then return base end
  local rt = os.getenv("XDG_RUNTIME_DIR")
  if rt and rt:sub(1, 1) == "/" and #rt + 19 <= M.MAX_CONTROL_DIR then
    return rt .. "/agent-dispatch-ssh"
  end
  local home = os.getenv("HOME") or ""
  if home:sub(1, 1) == "/" and #home + 27 <= M.MAX_CONTROL_DIR then
    return home .. "/.cache/agent-dispatch/ssh"
  end
  return "/tmp/agent-dispatch-ssh-" .. core.sys.getuid()
end

--- Makes the control directory private; returns it, or nil and why.
function M.ensure_control_dir()
  local dir = M.control_dir()
  local ok, err = core.fs.mkdirs(dir, 448) -- 0700
  if not ok then return nil, "ssh control directory " .. dir .. ": " .. tostring(err) end
  local kind, _, mode, uid = core.fs.stat(dir)
  if kind ~= "dir" or uid ~= core.sys.getuid() or (mode & 63) ~= 0 then
    -- Another user could reach (or replace) the sockets of our connections.
    return nil, "ssh control directory " .. dir .. " must be a directory of this " ..
      "user that nobody else can enter (mode 0700)"
  end
  return dir
end

--- ssh's options for a destination: BatchMode (never a prompt),
--- ConnectTimeout, connection sharing in the private directory. Host-key
--- checking is left as the user's ssh configuration has it.
function M.ssh_options(h, o)
  local argv = { "-T", "-o", "BatchMode=yes",
    "-o", "ConnectTimeout=" .. math.max(1, math.floor(o.connect_timeout or M.CONNECT_TIMEOUT)) }
  if o.control_dir then
    argv[#argv + 1] = "-o"; argv[#argv + 1] = "ControlMaster=auto"
    argv[#argv + 1] = "-o"; argv[#argv + 1] = "ControlPath=" .. o.control_dir .. "/%C"
    argv[#argv + 1] = "-o"; argv[#argv + 1] = "ControlPersist=" .. (o.persist or 60)
  end
  if h.port then argv[#argv + 1] = "-p"; argv[#argv + 1] = tostring(h.port) end
  return argv
end

function M.ssh_path()
  local override = os.getenv("AGENT_DISPATCH_SSH")
  return core.sys.which(override ~= nil and override ~= "" and override or "ssh")
end

--- The argv of the local ssh that runs claude_argv (argv[1] is the remote
--- program name, e.g. "claude") in dir on host, with env (list of
--- "K=V") exported and prompt as claude's stdin, and what to write to
--- ssh's stdin (then kept open until the run ends). o: connect_timeout,
--- control_dir, ssh (path).
function M.command(o)
  local h = assert(M.parse_host(o.host))
  -- o.live: the live transport writes the messages itself (input nil).
  local mode, count, input
  if o.live then mode, count = "L", 0 else mode, count, input = M.input(o.prompt) end
  local words = { o.directory, mode, tostring(count) }
  for _, kv in ipairs(o.env or {}) do words[#words + 1] = kv end
  words[#words + 1] = "--"
  for _, a in ipairs(o.claude_argv) do words[#words + 1] = a end
  local quoted = { "set --" }
  for _, w in ipairs(words) do quoted[#quoted + 1] = M.quote(w) end
  local argv = { o.ssh or "ssh" }
  for _, a in ipairs(M.ssh_options(h, o)) do argv[#argv + 1] = a end
  argv[#argv + 1] = "--"
  argv[#argv + 1] = h.dest
  argv[#argv + 1] = table.concat(quoted, " ") .. "\n" .. (o.live and M.WRAPPER_LIVE or M.WRAPPER)
  return argv, input
end

--- The environment entries (from a local child's env list) that cross.
function M.forwarded(env)
  local keep = {}
  for _, k in ipairs(M.FORWARDED_ENV) do keep[k] = true end
  local out = {}
  for _, kv in ipairs(env) do
    local k = kv:match("^([%w_]+)=")
    -- (AGENT_DISPATCH_TRACE_FILE, a context file, is a path on this
    -- machine: it never crosses)
    if k and keep[k] then
      out[#out + 1] = kv
    end
  end
  return out
end

-- ------------------------------------------------------------ dispatch --

--- The program the wrapper runs on the remote host (its PATH there).
M.CLAUDE = "claude"

--- Seconds between SIGTERM and SIGKILL for the local ssh. A multiplexing
--- ssh client takes its TERM only when data arrives; nothing of it needs a
--- graceful end (the far side cleans up when the channel closes).
M.KILL_GRACE = 0.3

--- What the local side of a remote dispatch needs: {path (ssh),
--- control_dir, connect_timeout}, or nil and a failed DispatchResult.
function M.local_command(name, settings)
  local path = M.ssh_path()
  if not path then
    return nil, result.failure(name, "not_found", "ssh not found in PATH: a remote " ..
      "agent needs the OpenSSH client (Debian: apt install openssh-client)")
  end
  local dir, err = M.ensure_control_dir()
  if not dir then return nil, result.failure(name, "remote", err) end
  return { path = path, control_dir = dir,
    connect_timeout = settings.ssh_connect_timeout or M.CONNECT_TIMEOUT }
end

-- ----------------------------------------------------------- failures --

--- A local ssh failure (exit 255): the first meaningful line of its stderr.
function M.ssh_error_text(stderr)
  local lines = {}
  for line in ((stderr or "") .. "\n"):gmatch("(.-)\r?\n") do
    local s = util.strip(line)
    if s ~= "" and not s:find("^Warning: Permanently added") then lines[#lines + 1] = s end
  end
  return table.concat(lines, "\n")
end

local function no_output(run, req)
  if run.payload ~= nil then return false end -- (a live run reads it in json mode too)
  if req.stream then return true end
  for _, line in ipairs(run.lines or {}) do
    if util.strip(line) ~= "" then return false end
  end
  return run.last == nil
end

--- The DispatchResult of a remote run that failed before claude could
--- answer (ssh could not connect, the directory or claude is missing
--- there), or what ad.domain.claude makes of the run otherwise.
function M.failure(run, req)
  local claude = require "ad.domain.claude"
  local info = run.info
  if run.spawn_error or not info or info.timed_out or not no_output(run, req) then
    return claude.interpret(run, req)
  end
  local name, a = req.agent_name, req.agent
  local text = M.ssh_error_text(info.stderr)
  if info.exit_code == 255 then
    return result.failure(name, "remote", "ssh to " .. a.host .. " failed: " ..
      (text ~= "" and text or "exit status 255, no message"))
  elseif info.exit_code == M.EXIT_NO_DIR then
    return result.failure(name, "not_found", "Directory does not exist on " .. a.host ..
      ": " .. a.directory)
  elseif info.exit_code == M.EXIT_NO_CLAUDE then
    return result.failure(name, "not_found", "Claude CLI not found on " .. a.host ..
      " (not on the PATH of a non-interactive ssh session there). " .. text)
  end
  return claude.interpret(run, req)
end

return M
