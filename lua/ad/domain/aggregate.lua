--- How dispatch_parallel asks an aggregator agent to merge the results.
--- Override this module (same name in your Lua directory) to change the
--- prompt; keep the function signatures.
local M = {}

M.TASK = "Synthesize the results below, one section per agent, into one " ..
  "coherent answer. Highlight the key findings, point out where agents " ..
  "disagree or conflict, and finish with actionable conclusions."
M.CALLER = "dispatch_parallel"
M.GOAL = "aggregate parallel dispatch results"

--- One section per item result: "## Agent: <name> [OK|FAILED]\n<body>".
function M.section(item)
  local ok = item.success == true
  local tag = ok and "OK" or "FAILED"
  local body = item.result
  if (body == nil or body == "") and item.summary then
    body = item.summary
    tag = tag .. ", preview of " .. tostring(item.size) .. " chars"
  end
  if body == nil or body == "" then body = item.error or "" end
  return "## Agent: " .. tostring(item.agent) .. " [" .. tag .. "]\n" .. body
end

function M.context(items)
  local parts = {}
  for i, item in ipairs(items) do parts[i] = M.section(item) end
  return table.concat(parts, "\n\n")
end

return M
