--- Per-process server state: the result cache, re-created (emptied) when
--- its settings change.
local core = require "ad.core"

local M = {}
local current, ttl, max_size, max_bytes

--- The cache for these settings, or nil when caching is disabled.
function M.cache(settings)
  local c = settings.cache
  if not c.enabled then return nil end
  if not current or ttl ~= c.ttl or max_size ~= c.max_size or max_bytes ~= c.max_bytes then
    current = core.cache.new(c.max_size, c.ttl, c.max_bytes)
    ttl, max_size, max_bytes = c.ttl, c.max_size, c.max_bytes
  end
  return current
end

--- Drops one agent's entries (after its configuration changed).
function M.invalidate(settings, agent)
  if current then return current:drop(agent) end
  return 0
end

-- Changes made outside this server (agent-dispatch update, an editor) are
-- seen on the next call's re-read: drop the changed agents' entries then.
require("ad.storage.config").on_agents_changed(function(names)
  for _, name in ipairs(names) do M.invalidate(nil, name) end
end)

return M
