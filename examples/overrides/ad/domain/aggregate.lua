-- A prompt override: copy to ~/.config/agent-dispatch/lua/ad/domain/aggregate.lua
-- and dispatch_parallel's aggregator gets this task instead of the shipped
-- one. The shipped module stays reachable, so only what changes is here.
local core = require "ad.core"
local default = load(core.embed.source("ad.domain.aggregate"), "=ad.aggregate (embedded)")()

default.TASK = "Merge the reviews below into one release checklist: blockers " ..
  "first, then risks, then nice-to-haves. Name the agent behind every item."

return default
