--- Whether the claude CLI of a remote agent's host has the live control
--- channel (settings.transport auto; ad.domain.transport asks). One ssh
--- round trip (over the shared connection) prints the identity of the
--- remote CLI - its path on the remote PATH, then inode, mode, owner,
--- size and mtime as `ls -lLdin` shows them - and runs `claude --help`
--- there only when that identity is not the one already known. The
--- answer is kept per host and remote CLI identity in
--- <config dir>/remote-transport.json (like cli-transport.json), so an
--- upgraded remote CLI is probed again and an unchanged one never is; a
--- process asks each host again (identity only) after TTL seconds.
---
--- A host that cannot be reached (ssh exit 255) is reported to the caller
--- with ssh's text: the dispatch fails as it would have, after one
--- connection attempt, not two. Any other failure of the probe (no answer
--- in time, a garbled answer) counts as no channel for this call only.
local core = require "ad.core"
local json = require "ad.infra.json"
local paths = require "ad.storage.paths"
local remote = require "ad.domain.remote"

local M = {}

--- Seconds a process trusts what it learnt of a host before it checks
--- the remote CLI's identity again.
M.TTL = 60
--- Seconds the whole probe may take (`claude --help` included).
M.TIMEOUT = 30

-- $1: the identity known here (or ""). Output: "none" (no claude on the
-- remote PATH), or "id <identity>" and, when it differs from $1, "live"
-- or "oneshot".
M.SCRIPT = [=[
k=$1
p=$(command -v claude) || { echo none; exit 0; }
i=$(LC_ALL=C ls -lLdin -- "$p" 2>/dev/null) || { echo none; exit 0; }
printf 'id %s\n' "$i"
[ "$i" = "$k" ] && exit 0
if claude --help 2>/dev/null | grep -q -e --input-format; then echo live; else echo oneshot; fi
]=]

local memo = {}    -- host -> {at =, live =}
local probing = {} -- host -> event while a probe runs

local function cache_path()
  return paths.config_dir() .. "/remote-transport.json"
end

local function load_disk()
  local text = core.fs.read_file(cache_path(), 1024 * 1024, true)
  local ok, t = pcall(json.decode, text or "")
  return ok and type(t) == "table" and not json.is_array(t) and t or {}
end

-- Runs the probe: live (boolean), the identity it saw (nil: none to keep),
-- or nil and the ssh error text when the host could not be reached.
local function probe(host, known, settings, limit)
  local cmd = "exec sh -c " .. remote.quote(M.SCRIPT) .. " agent-dispatch " .. remote.quote(known or "")
  local lines, info = require("ad.domain.remote_probe").ssh_lines(host, cmd,
    (settings and settings.ssh_connect_timeout) or remote.CONNECT_TIMEOUT,
    { timeout = math.min(M.TIMEOUT, limit or M.TIMEOUT) })
  if not lines or not info then return false end
  if info.timed_out then return false, nil, false, true end
  if info.exit_code == 255 then
    local why = remote.ssh_error_text(info.stderr)
    return nil, why ~= "" and why or "exit status 255, no message"
  end
  if info.timed_out or info.exit_code ~= 0 then return false end
  local id = (lines[1] or ""):match("^id (.+)$")
  -- No line at all with status 0: the output of the session that started
  -- the shared connection can be lost while its master goes to the
  -- background. Worth one more round trip.
  if #lines == 0 then return false, nil, true end
  if not id then return false end
  if lines[2] == "live" or lines[2] == "oneshot" then return lines[2] == "live", id end
  if id == known and lines[2] == nil then return "known", id end
  return false
end

--- True when the claude CLI on host has the live channel; nil and ssh's
--- error text when host could not be reached. limit: the most seconds the
--- probe may take (what is left of the dispatch's timeout; M.TIMEOUT at
--- most). A host that did not answer in time counts as one without the
--- channel for M.TTL: the next dispatches do not wait for it again.
function M.has_channel(host, settings, limit)
  local now = core.task.now()
  local m = memo[host]
  if m and now - m.at < M.TTL then return m.live end
  local ev = probing[host]
  if ev then
    local r = ev:wait()
    if type(r) == "table" then return nil, r[1] end
    return r == true
  end
  ev = core.task.event()
  probing[host] = ev
  local disk = load_disk()
  local d = type(disk[host]) == "table" and disk[host] or {}
  local known = type(d.id) == "string" and type(d.live) == "boolean" and d.id or nil
  local ok, live, id, again, slow = pcall(probe, host, known, settings, limit)
  if ok and again and not core.task.cancelled() then
    ok, live, id, again, slow = pcall(probe, host, known, settings, limit)
  end
  probing[host] = nil
  if not ok then live, id = false, nil end
  if ok and slow and not core.task.cancelled() then
    memo[host] = { at = now, live = false }
  end
  if live == nil then
    ev:set({ id })
    return nil, id
  end
  if live == "known" then live = d.live end
  ev:set(live)
  -- A probe cut short (its task cancelled) answers this call only.
  if core.task.cancelled() or not id then return live end
  memo[host] = { at = now, live = live }
  if id ~= known then
    disk = load_disk() -- another process may have written meanwhile
    disk[host] = { id = id, live = live }
    core.fs.mkdirs(paths.config_dir(), 448)
    core.fs.write_atomic(cache_path(), json.encode(disk), 384, true)
  end
  return live
end

--- For tests: forget what this process learnt.
function M.forget() memo = {} end

return M
