--- Cache tools: cache_stats, cache_clear.
local json = require "ad.infra.json"
local tools = require "ad.tools"
local state = require "ad.storage.state"
local util = require "ad.infra.util"

local function disabled()
  return json.object({ enabled = false, message = "Cache is disabled in settings" },
                     { "enabled", "message" })
end

tools.define{
  name = "cache_stats",
  title = "Result cache statistics",
  description = "Statistics of the in-memory result cache of this server: " ..
    "size, max_size, hits, misses, evictions, hit_rate, ttl.",
  params = {},
  annotations = json.object({ readOnlyHint = true, openWorldHint = false },
                            { "readOnlyHint", "openWorldHint" }),
  guard = "config",
  handler = function(_, ctx)
    local c = state.cache(ctx.cfg.settings)
    if not c then return disabled() end
    c:evict_expired()
    local s = c:stats()
    s.bytes, s.max_bytes = nil, nil -- the documented fields only
    local lookups = s.hits + s.misses
    s.hit_rate = lookups > 0 and util.round(s.hits / lookups, 3) or 0.0
    s.ttl = math.tointeger(s.ttl) or s.ttl
    return json.object(s, { "size", "max_size", "hits", "misses", "evictions", "hit_rate", "ttl" })
  end,
}

tools.define{
  name = "cache_clear",
  title = "Clear the result cache",
  description = "Empty the in-memory result cache and reset its counters.",
  params = {},
  annotations = json.object({ readOnlyHint = false, destructiveHint = true,
    idempotentHint = true, openWorldHint = false },
    { "readOnlyHint", "destructiveHint", "idempotentHint", "openWorldHint" }),
  guard = "config",
  handler = function(_, ctx)
    local c = state.cache(ctx.cfg.settings)
    if not c then return disabled() end
    local n = c:clear()
    ctx.log("info", "Cleared " .. n .. " cached results")
    return json.object({ cleared = n }, { "cleared" })
  end,
}
