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
  local goal, caller, context = present(p.goal), present(p.caller), present(p.context)
  if not caller and not goal then
    if context then
      out = "Context:\n" .. p.context .. "\n\nTask:\n" .. p.task
    else
      out = p.task
    end
  else
    -- The sections present, each joined to the next by a blank line (one
    -- concatenation per section: no list to join).
    out = "## Task\n" .. p.task
    if context then out = "## Context\n" .. p.context .. "\n\n" .. out end
    if caller then out = "## Dispatched by\n" .. p.caller .. "\n\n" .. out end
    if goal then out = "## Goal\n" .. p.goal .. "\n\n" .. out end
  end
  if p.response_format == "json" then
    out = out .. "\n\n" .. M.JSON_FOOTER
  end
  return out
end

return M
