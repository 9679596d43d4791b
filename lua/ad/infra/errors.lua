--- Error classes, classification and remediation hints for dispatches.
--- Every remediation names a command or flag that exists (hints are tested
--- by feeding their flags back into the CLI).
local util = require "ad.infra.util"
local limits = require "ad.infra.limits"

local M = {}

M.TYPES = { "permission", "timeout", "recursion", "not_found", "budget",
            "cli_error", "schema", "remote" }

local PERMISSION_WORDS = {
  "permission denied", "not allowed", "not permitted", "disallowed tool",
  "permission mode", "not have permission", "tool is not available",
  "tool_use is not allowed", "unauthorized",
}

--- "permission" when the text reads like a permission problem, else
--- "cli_error". Any value is accepted; nil and "" are "cli_error".
function M.classify(text)
  if type(text) ~= "string" then
    if text == nil then return "cli_error" end
    text = tostring(text)
  end
  local low = text:lower()
  for _, w in ipairs(PERMISSION_WORDS) do
    if low:find(w, 1, true) then return "permission" end
  end
  return "cli_error"
end

function M.permission_hint(name)
  return "\n\nHint: agent '" .. name .. "' was denied a tool or action. " ..
    "Its permissions live in agents.yaml; grant access with one of:\n" ..
    "  agent-dispatch update " .. name .. " --permission-mode bypassPermissions\n" ..
    "  agent-dispatch update " .. name .. " --allowed-tools Bash,Read,Edit,Write,Glob,Grep"
end

local function resume_call(name, session_id)
  return "dispatch_session(agent='" .. name .. "', task='Continue where you " ..
    "left off', session_id='" .. session_id .. "')"
end

function M.budget_hint(name, cap, session_id, by_tree)
  local capt = cap and ("the spend cap $" .. util.g(cap)) or "the configured cap"
  local raise = cap and util.g(cap * 2) or "2.0"
  local s
  if by_tree then
    -- (what the tree had left, not the agent's own cap)
    s = "\n\nHint: the dispatch was stopped by " .. capt .. ", what its delegation " ..
      "tree had left of tree_budget_usd (passed to claude as --max-budget-usd), so the " ..
      "answer is incomplete. Give the tree a bigger tree_budget_usd (the call's, or " ..
      "settings.tree_budget_usd), use a cheaper model (agent-dispatch update " ..
      name .. " --model haiku), or split the task."
  else
    s = "\n\nHint: the dispatch was stopped by " .. capt ..
      " (passed to claude as --max-budget-usd), so the answer is incomplete. " ..
      "Raise the cap with: agent-dispatch update " .. name ..
      " --max-budget-usd " .. raise .. ", use a cheaper model (agent-dispatch update " ..
      name .. " --model haiku), or split the task."
  end
  if session_id then
    s = s .. " To continue this session: " .. resume_call(name, session_id)
  end
  return s
end

function M.denial_hint(name, denied)
  local list = table.concat(denied, ", ")
  local csv = table.concat(denied, ",")
  return #denied .. " tool call(s) were denied by permissions (" .. list ..
    "): the result may be incomplete because agent '" .. name ..
    "' could not use them. Grant access with update_agent(name='" .. name ..
    "', allowed_tools='" .. csv .. "') or permission_mode='bypassPermissions', " ..
    "or from a shell: agent-dispatch update " .. name .. " --allowed-tools " .. csv
end

function M.timeout_message(name, seconds, session_id)
  -- (whole seconds as integers, whatever number type they came as)
  local function n(x) return math.tointeger(x) or x end
  local longer = math.min(seconds * 2, limits.MAX_TIMEOUT)
  local s = "Agent '" .. name .. "' timed out after " .. n(seconds) .. "s. " ..
    "Options: pass timeout_seconds=" .. n(longer) .. " for a longer one-off run " ..
    "(at most " .. limits.MAX_TIMEOUT .. "), use dispatch_async for long work, or raise the agent's " ..
    "default with: agent-dispatch update " ..
    name .. " --timeout " .. n(seconds * 2) .. "."
  if session_id then
    s = s .. " The session is resumable: " .. resume_call(name, session_id)
  end
  return s
end

--- The timeout error and advice on the command line, in its own terms
--- (--timeout of `command` and of `update`), with one number for both:
--- twice the seconds that ran out, at most limits.MAX_TIMEOUT. A list of
--- lines.
function M.cli_timeout_advice(name, seconds, command)
  local longer = math.min(seconds * 2, limits.MAX_TIMEOUT)
  local lines = { "Error: Agent '" .. name .. "' timed out after " .. seconds .. "s.",
    "Diagnosis: timeout" }
  if longer > seconds then
    lines[#lines + 1] = "  agent-dispatch " .. command .. " " .. name .. " --timeout " .. longer ..
      "    (one-off)"
    lines[#lines + 1] = "  agent-dispatch update " .. name .. " --timeout " .. longer ..
      "    (the agent's default)"
  else
    lines[#lines + 1] = "  " .. seconds .. "s is the longest timeout (" .. limits.MAX_TIMEOUT ..
      "s); split the task into smaller ones."
  end
  return lines
end

function M.over_budget_note(cost, budget, by_tree)
  if by_tree then
    return string.format("Cost $%.4f exceeded the $%.2f its delegation tree had left " ..
      "(tree_budget_usd); consider a cheaper model, a tighter task or a bigger " ..
      "tree_budget_usd.", cost, budget)
  end
  return string.format("Cost $%.4f exceeded the configured budget $%.2f for " ..
    "this agent; consider a cheaper model, a tighter task or raising " ..
    "max_budget_usd.", cost, budget)
end

--- A policy error object: {type=, message=, hint=}. Raised with error()
--- by code that cannot return a normal result; the MCP layer maps it.
function M.new(etype, message, hint)
  return setmetatable({ type = etype, message = message, hint = hint },
    { __tostring = function(e) return e.message end })
end

--- Raises the "io" error of a storage operation: "what: msg"; code, the
--- errno name when known (EMFILE...), is kept as e.code.
function M.raise_io(what, msg, code)
  local e = M.new("io", what .. ": " .. tostring(msg))
  e.code = code
  error(e, 0)
end

return M
