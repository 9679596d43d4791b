--- The two-agent dialogue: prompts, the resolution marker and the loop.
--- Override this module to change how agents talk; the loop calls
--- turn(agent, role, round, message, session_id) supplied by the caller.
local util = require "ad.infra.util"

local M = {}

M.MARKER = "[RESOLVED]"

function M.first_prompt(requester, topic)
  return "You are starting a collaborative dialogue with agent '" .. requester ..
    "', who needs your expertise. Give your analysis, or ask the questions you " ..
    "need answered. End your reply with " .. M.MARKER .. " once you have given " ..
    "a complete answer and have no further questions.\n\nTopic:\n" .. topic
end

function M.reply_prompt(other, message)
  return "Agent '" .. other .. "' responds:\n\n" .. message .. "\n\n" ..
    "Continue the dialogue: answer, refine or ask. End your reply with " ..
    M.MARKER .. " when the problem is completely solved."
end

--- Runs the dialogue. turn(agent, role, round, prompt, session_id) returns a
--- DispatchResult. Returns the response table (F48 shape).
function M.run(p, turn)
  local conversation = {}
  local sessions = {}
  local last = { responder = nil, requester = nil }
  local total_cost, total_ms = 0, 0
  local resolved, final = false, nil
  local function do_turn(role, round)
    local agent = role == "responder" and p.responder or p.requester
    local other = role == "responder" and p.requester or p.responder
    local prompt
    if role == "responder" and round == 1 then
      prompt = M.first_prompt(p.requester, p.topic)
    else
      local msg = role == "responder" and last.requester or last.responder
      prompt = M.reply_prompt(other, msg or "")
    end
    local r = turn(agent, other, role, round, prompt, sessions[agent])
    if r.session_id then sessions[agent] = r.session_id end
    local entry = { agent = agent, role = role, round = round,
                    message = r.result or "", cost_usd = r.cost_usd,
                    error = r.success == false and r.error or nil,
                    error_type = r.success == false and r.error_type or nil }
    conversation[#conversation + 1] = entry
    total_cost = total_cost + (type(r.cost_usd) == "number" and r.cost_usd or 0)
    total_ms = total_ms + (math.tointeger(r.duration_ms) or 0)
    last[role] = entry.message
    if entry.message:find(M.MARKER, 1, true) then
      resolved = true
      final = util.strip((entry.message:gsub(M.MARKER:gsub("%p", "%%%0"), "")))
      return true
    end
    if r.success == false then
      final = (r.error and r.error ~= "") and r.error or entry.message
      return true
    end
    return false
  end
  for round = 1, p.max_rounds do
    if do_turn("responder", round) then break end
    if do_turn("requester", round) then break end
  end
  if final == nil then
    final = #conversation > 0 and conversation[#conversation].message or ""
  end
  return {
    resolved = resolved,
    rounds = #conversation > 0 and conversation[#conversation].round or 0,
    total_cost_usd = util.round(total_cost, 4),
    total_duration_ms = total_ms,
    final_answer = final,
    conversation = conversation,
  }
end

return M
