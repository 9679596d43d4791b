-- Let two agents talk a problem through, e.g. a frontend that needs an API
-- change and the backend that owns the API.
--
--   agent-dispatch run examples/dialogue.lua REQUESTER RESPONDER "topic"
local ad = require "agent_dispatch"

local requester, responder, topic = ...
if not (requester and responder and topic) then
  ad.log("usage: agent-dispatch run examples/dialogue.lua REQUESTER RESPONDER TOPIC")
  return 2
end

local d = ad.dialogue{ requester = requester, responder = responder,
                       topic = topic, max_rounds = 3 }
for _, turn in ipairs(d.conversation) do
  ad.log(("[round %d] %s (%s): %s"):format(turn.round, turn.agent, turn.role,
                                           turn.message:sub(1, 120)))
end
print(d.final_answer)
ad.log(("resolved=%s rounds=%d cost=$%.4f"):format(tostring(d.resolved), d.rounds,
                                                    d.total_cost_usd))
return d.resolved
