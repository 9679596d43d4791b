--- `agent-dispatch live`: the claude processes that running servers keep
--- alive between calls (live sessions, warm pools), read from the stats
--- each server publishes (ad.domain.live). Returns {live = command}.
local core = require "ad.core"
local json = require "ad.infra.json"
local common = require "ad.cli.common"

local out = common.out

local C = {}

-- Numbers read back from JSON are floats: whole ones print as integers.
local function int(v)
  return type(v) == "number" and math.tointeger(v) or v
end

local function mb(kb)
  if type(kb) ~= "number" then return "-" end
  return string.format("%.0f MB", kb / 1024)
end

C.live = {
  usage = "[--json]",
  summary = "Show live sessions and warm pool processes of running servers.",
  options = { common.JSON_OPT },
  positionals = {}, min = 0, max = 0,
  run = function(o)
    local live = require "ad.domain.live"
    local servers = live.read_all()
    local t = core.task.time()
    local total_rss, n = 0, 0
    -- Idle time and memory as of now, not as of the server's last write.
    for _, s in ipairs(servers) do
      s.rss_kb, s.server_pid, s.sessions, s.warm = 0, int(s.server_pid), int(s.sessions), int(s.warm)
      if type(s.bounds) == "table" then
        s.bounds.max, s.bounds.idle_seconds = int(s.bounds.max), int(s.bounds.idle_seconds)
      end
      for _, p in ipairs(s.processes or {}) do
        if type(p.idle_since) == "number" then
          p.idle_seconds = math.floor((t - p.idle_since) * 10 + 0.5) / 10
        end
        p.pid, p.turns = int(p.pid), int(p.turns)
        p.rss_kb = live.rss_kb(p.pid) or json.null
        if p.rss_kb ~= json.null then s.rss_kb = s.rss_kb + p.rss_kb end
        n = n + 1
      end
      total_rss = total_rss + s.rss_kb
    end
    if o.json then
      return common.json_out(json.object({ servers = json.array(servers), processes = n,
        rss_kb = total_rss }, { "servers", "processes", "rss_kb" }))
    end
    if #servers == 0 then
      out("No live sessions or warm processes (no server keeps any).")
      return 0
    end
    for _, s in ipairs(servers) do
      local b = s.bounds or {}
      out(string.format("server %s: %d live session(s) (max %s, idle %s s), %d warm, %s",
        tostring(s.server_pid), s.sessions or 0, tostring(b.max), tostring(b.idle_seconds),
        s.warm or 0, mb(s.rss_kb)))
      local fmt = "  %-7s %-16s %-8s %-36s %8s %5s %8s"
      out((string.format(fmt, "KIND", "AGENT", "PID", "SESSION", "IDLE", "TURNS", "RSS"):gsub("%s+$", "")))
      for _, p in ipairs(s.processes or {}) do
        out((string.format(fmt, tostring(p.kind), tostring(p.agent), tostring(p.pid),
          type(p.session_id) == "string" and p.session_id or "-",
          string.format("%.0fs", tonumber(p.idle_seconds) or 0), tostring(p.turns or 0),
          mb(p.rss_kb)):gsub("%s+$", "")))
      end
    end
    out(string.format("total: %d process(es), %s", n, mb(total_rss)))
    return 0
  end,
}

return C
