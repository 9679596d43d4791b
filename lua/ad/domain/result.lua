--- The DispatchResult: what every dispatch returns, on success and on
--- failure alike (never an exception, cancellation aside). One shape, one
--- key order, for the tools, job records, the cache and scripts.

local M = {}

M.KEYS = { "agent", "success", "result", "session_id", "cost_usd",
  "duration_ms", "num_turns", "error", "error_type", "parsed_result",
  "structured_output", "denied_tools", "hint", "budget_exceeded", "cached", "permissions" }

-- The metatable of every DispatchResult (json.object's, made once: one
-- table less per dispatch). Shared: read it, never change it (a result
-- with more keys gets a metatable of its own, json.append_keys).
local MT = { __order = M.KEYS }

--- fields marked as a DispatchResult (its keys come out in M.KEYS order).
---@param fields table
---@return table
function M.new(fields)
  return setmetatable(fields, MT)
end

--- A failed DispatchResult: agent name, error type (errors.TYPES), message,
--- and extra fields (session_id, hint, cost...) copied over.
---@return table
function M.failure(name, etype, message, extra)
  local r = M.new({ agent = name, success = false, result = "",
                    error = message, error_type = etype })
  for k, v in pairs(extra or {}) do r[k] = v end
  return r
end

return M
