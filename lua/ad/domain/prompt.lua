--- The prompt an agent receives (override this module to change it).
local M = {}

M.JSON_FOOTER = "## Response format\n" ..
  "Reply with exactly one valid JSON value (an object, an array or a " ..
  "scalar) and nothing else: no markdown code fences, no text before or " ..
  "after it. If you cannot comply, answer {\"error\": \"<reason>\"}."

local function present(s)
  return s ~= nil and s ~= ""
end

--- Builds the prompt from task, context, caller, goal, response_format.
---@param p {task:string, context:string?, caller:string?, goal:string?, response_format:string?}
---@return string
function M.build(p)
  local out
  if not present(p.caller) and not present(p.goal) then
    if present(p.context) then
      out = "Context:\n" .. p.context .. "\n\nTask:\n" .. p.task
    else
      out = p.task
    end
  else
    local parts = {}
    if present(p.goal) then parts[#parts + 1] = "## Goal\n" .. p.goal end
    if present(p.caller) then parts[#parts + 1] = "## Dispatched by\n" .. p.caller end
    if present(p.context) then parts[#parts + 1] = "## Context\n" .. p.context end
    parts[#parts + 1] = "## Task\n" .. p.task
    out = table.concat(parts, "\n\n")
  end
  if p.response_format == "json" then
    out = out .. "\n\n" .. M.JSON_FOOTER
  end
  return out
end

return M
