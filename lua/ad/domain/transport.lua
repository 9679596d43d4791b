--- Which transport a claude child gets: "live" (the CLI's stream-json
--- control channel, ad.domain.channel: steerable, interrupted gracefully
--- on cancel) or "oneshot" (`claude -p`, the prompt on stdin, closed).
---
--- settings.transport: "auto" (default) | "live" | "oneshot". auto is
--- live when the CLI has the channel: the local one, or for a remote agent
--- the one on its host (ad.domain.remote_transport: one ssh round trip,
--- cached per host and remote CLI). Whether a local CLI has the
--- channel is measured once per binary: `claude --help` lists
--- --input-format (about 0.1 s); the answer is kept in this process and
--- on disk (<config dir>/cli-transport.json, keyed by the binary's path
--- and its device, inode, size and mtime), so an upgraded CLI is probed
--- again and an unchanged one never is.
local core = require "ad.core"
local json = require "ad.infra.json"
local paths = require "ad.storage.paths"

local M = {}

M.MODES = { auto = true, live = true, oneshot = true }
M.PROBE_TIMEOUT = 10

local memo = {} -- path -> {id =, live =}
local probing = {} -- path -> {id =, ev =} while a probe runs

local function cache_path()
  return paths.config_dir() .. "/cli-transport.json"
end

local function load_disk()
  local text = core.fs.read_file(cache_path(), 1024 * 1024, true)
  local t = text and json.decode(text)
  return type(t) == "table" and not json.is_array(t) and t or {}
end

-- Runs `claude --help` and looks for the flag (a task: yields). env: the
-- environment a child gets (ad.domain.runner.child_env).
local function probe(path, env, limit)
  local p = core.proc.spawn{ argv = { path, "--help" }, env = env,
    timeout = math.min(M.PROBE_TIMEOUT, limit or M.PROBE_TIMEOUT),
    max_line = 64 * 1024 }
  if not p then return false end
  local found = false
  while true do
    local line = p:read_line()
    if line == nil then break end
    if line:find("--input-format", 1, true) then found = true end
  end
  local info = p:wait()
  p:close()
  return found and info ~= nil and info.exit_code == 0
end

--- True when the claude binary at path has the live control channel
--- (env: the probe's environment, a child's; id: its core.fs.file_id when
--- the caller has it, from the stat that found the binary).
function M.has_channel(path, env, id, limit)
  id = id or core.fs.file_id(path)
  if not id then return false end
  local m = memo[path]
  if m and m.id == id then return m.live end
  local disk = load_disk()
  local d = disk[path]
  if type(d) == "table" and d.id == id and type(d.live) == "boolean" then
    memo[path] = { id = id, live = d.live }
    return d.live
  end
  -- One probe per binary at a time: concurrent first dispatches wait
  -- for its answer.
  local pending = probing[path]
  if pending and pending.id == id then return pending.ev:wait() == true end
  pending = { id = id, ev = core.task.event() }
  probing[path] = pending
  local ok, live = pcall(probe, path, env, limit)
  live = ok and live or false
  probing[path] = nil
  pending.ev:set(live)
  -- A probe cut short (its task cancelled) answers this call only.
  if core.task.cancelled() then return live end
  memo[path] = { id = id, live = live }
  disk = load_disk() -- another process may have written meanwhile
  disk[path] = { id = id, live = live }
  core.fs.mkdirs(paths.config_dir(), 448)
  core.fs.write_atomic(cache_path(), json.encode(disk), 384, true)
  return live
end

--- "live" or "oneshot" for a request whose claude is at path (nil for a
--- remote agent); env and id as for has_channel; limit, the most seconds
--- a probe may take (the dispatch's timeout: the probe counts in it). For
--- a remote agent whose host could not be reached: "oneshot" and ssh's
--- error text.
function M.choose(settings, agent, path, env, id, limit)
  local mode = settings.transport or "auto"
  if mode ~= "auto" then return mode end
  if agent.host then
    local live, why = require("ad.domain.remote_transport").has_channel(agent.host, settings, limit)
    if live == nil then return "oneshot", why end
    return live and "live" or "oneshot"
  end
  if not path then return "oneshot" end
  return M.has_channel(path, env, id, limit) and "live" or "oneshot"
end

return M
