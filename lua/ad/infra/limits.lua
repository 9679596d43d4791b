--- Bounds shared by every surface that states or applies them: the one
--- definition of the range a one-off timeout override is clamped to (the
--- MCP tools' timeout_seconds, scripts' timeout_seconds) and that the
--- timeout hint may suggest.
local M = {}

M.MIN_TIMEOUT = 10   -- seconds
M.MAX_TIMEOUT = 7200 -- seconds

--- "10-7200", as the tool parameter descriptions show the range.
function M.timeout_range()
  return M.MIN_TIMEOUT .. "-" .. M.MAX_TIMEOUT
end

return M
