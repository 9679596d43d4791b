--- What a server (ad.protocol.mcp) does beside answering requests: the
--- startup maintenance once it is answering (retention, stale jobs, warm
--- pools), and, when its input ends while handed-off calls still run, the
--- supervision of those calls. Loaded once the first response is written,
--- not at start.
local core = require "ad.core"

local M = {}

-- Seconds without a new request line that count as a pause in the
-- client's requests (a client sends tools/list right after initialize).
local QUIET = 0.02

-- True when an agent of cfg wants a warm pool (ad.domain.live: local
-- agents with warm: N).
local function wants_pool(cfg)
  for _, a in pairs(cfg.agents) do
    if (a.warm or 0) > 0 and not a.host then return true end
  end
  return false
end

-- The warm pools start with the server. ad.domain.live (and the channel
-- code it needs) is loaded only once an agent wants a pool, now or after
-- a change of agents.yaml, so an idle server without pools does not hold it.
local function serve_pools(cfg)
  if wants_pool(cfg) then return require("ad.domain.live").serve(cfg) end
  local config = require "ad.storage.config"
  local served = false
  config.on_agents_changed(function()
    if served or not core.task.in_task() then return end
    core.task.spawn(function()
      local ok, c = pcall(config.load)
      if ok and c and not served and wants_pool(c) then
        served = true
        require("ad.domain.live").serve(c)
      end
    end)
  end)
end

--- F33: retention and stale-job recovery, best effort, once the server is
--- answering (ad.protocol.mcp runs this after its first response is
--- written, after 0.5 s without one, or at the latest while it stops): at
--- the first pause in the client's requests (QUIET; it never delays the
--- tools/list that follows the handshake), so a server that lives for a
--- single `claude -p` call does it too. stopping() and last_input() tell
--- whether the server stops and when it last read a request.
function M.maintenance(stopping, last_input)
  local deadline = core.task.now() + 1 -- a client that never pauses waits no longer
  while not stopping() and core.task.now() < deadline do
    local idle = core.task.now() - last_input()
    if idle >= QUIET then break end
    if core.task.sleep(QUIET - idle) == nil then return end
  end
  -- Report broken tool files on stderr early, not at first use (not worth
  -- the time once the server is stopping).
  if not stopping() then require("ad.protocol.mcp").ensure_tools() end
  local jobs = require "ad.storage.jobs"
  local ok, err = pcall(function()
    local cfg = require("ad.storage.config").load()
    local days = cfg and cfg.settings.job_retention_days or 0
    if days > 0 then
      jobs.gc(days * 86400)
      require("ad.storage.traces").prune(days * 86400)
    end
    jobs.recover_stale()
    -- The warm pools of agents with warm: N start now, off the handshake.
    if cfg and not stopping() then serve_pools(cfg) end
  end)
  if not ok then
    io.stderr:write("agent-dispatch: startup maintenance skipped: ",
      tostring(type(err) == "table" and err.message or err), "\n")
  end
end

--- Input ended while calls handed off to jobs (ad.domain.async.adopt)
--- still run in this process, whose children die with it: it stays as
--- their supervisor until they have ended, its stdin and stdout on
--- /dev/null and in a session of its own (core.sys.leave_client), then
--- exits. A shutdown signal meanwhile ends them (marked failed, children
--- killed). Returns the signal, if one came.
function M.supervise(async)
  local runs = async.handed_off()
  if #runs == 0 then return nil end
  core.chan.stdout_drain(1)
  local ok, err = core.sys.leave_client()
  io.stderr:write(os.date("!%Y-%m-%dT%H:%M:%SZ"), " INFO agent-dispatch: input ended with ",
    #runs, " handed-off job(s) running; staying as their supervisor until they end",
    ok and "" or (" (could not leave the client's session: " .. tostring(err) .. ")"), "\n")
  local stop = core.task.event()
  local watcher = core.task.spawn(function()
    local sig = core.signal.wait()
    if sig then stop:set(sig) end
  end)
  local waiter = core.task.spawn(function()
    for _, run in ipairs(runs) do run.done:wait() end
    stop:set(false)
  end)
  local sig = stop:wait()
  watcher:cancel()
  waiter:cancel()
  return sig or nil
end

return M
