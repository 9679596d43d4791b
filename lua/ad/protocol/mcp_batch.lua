--- JSON-RPC batches of the 2025-03-26 protocol (ad.protocol.mcp's
--- Server:batch): one array answers the batch's requests.
local core = require "ad.core"
local json = require "ad.infra.json"

local M = {}

--- Runs the messages of list on server (message: Server.message) and
--- writes the responses they get as one array. The batch's requests run on a
--- proxy of the server that takes their responses; everything else goes
--- where it would go outside a batch: notifications (progress, logs,
--- resource updates) and requests to the client are written as they
--- come, state (a subscription's watch, the log level) is the server's,
--- and the calls are in the server's in-flight table, so a
--- notifications/cancelled reaches them. A cancelled request gets no
--- response, in a batch as outside one.
function M.run(server, list, message)
  core.task.spawn(function()
    local out = json.array()
    local mine = {}
    local inflight = setmetatable({}, {
      __index = function(_, k) return server.inflight[k] end,
      __newindex = function(_, k, v)
        if v ~= nil then mine[k] = v end
        server.inflight[k] = v
      end })
    local proxy = setmetatable({ inflight = inflight, write = function(text)
      if core.json.raw_member(text, "method") == nil then
        out[#out + 1] = json.raw(text:sub(1, -2))
        return true
      end
      return server.write(text)
    end }, { __index = server, __newindex = server })
    for _, m in ipairs(list) do
      message(proxy, m, nil)
    end
    for _, e in pairs(mine) do
      if e.task and not e.task:done() then e.task:wait() end
    end
    if #out > 0 then server:send(out) end
  end)
end

return M
