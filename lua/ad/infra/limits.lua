--- Bounds shared by every surface that states or applies them: the one
--- definition of the range a one-off timeout override is clamped to (the
--- MCP tools' timeout_seconds, scripts' timeout_seconds) and that the
--- timeout hint may suggest.
local M = {}

M.MIN_TIMEOUT = 10   -- seconds
M.MAX_TIMEOUT = 7200 -- seconds

--- The sync-to-async hand-off (handoff_after_seconds): 0 = never, else
--- seconds, at most MAX_HANDOFF (a per-call value above it is clamped).
M.MAX_HANDOFF = 86400

--- The summary a result reference (return_ref) carries, in characters,
--- when the call does not say (summary_chars).
M.SUMMARY_CHARS = 500

--- The longest message sent to a running agent's model (bytes): a steer,
--- or the message of a permission decision.
M.MAX_MESSAGE = 32 * 1024

--- "10-7200", as the tool parameter descriptions show the range.
function M.timeout_range()
  return M.MIN_TIMEOUT .. "-" .. M.MAX_TIMEOUT
end

return M
