--- live_stats: the claude processes this server keeps alive between calls
--- (live sessions and warm pools, ad.domain.live).
local json = require "ad.infra.json"
local tools = require "ad.tools"

tools.define{
  name = "live_stats",
  title = "Live sessions and warm pool",
  description = "The claude processes this server keeps alive between calls: live " ..
    "sessions (a dispatch_session continuation goes to its process instead of " ..
    "--resume) and warm pools (agents with warm: N). Each with kind, agent, pid, " ..
    "session_id, idle_seconds, turns and rss_kb; totals and bounds " ..
    "(settings.live_sessions).",
  params = {},
  annotations = json.object({ readOnlyHint = true, openWorldHint = false },
                            { "readOnlyHint", "openWorldHint" }),
  guard = "config",
  handler = function(_, ctx)
    local live = require "ad.domain.live"
    live.configure(ctx.cfg.settings)
    return live.stats()
  end,
}
