--- The command line and the environment a claude child is spawned with,
--- as the runner (ad.domain.runner) hands them to core.proc.spawn: made
--- once and reused while what they are made of stays the same, so the
--- path between a call and its child's spawn does not make them again.
local core = require "ad.core"
local channel = require "ad.domain.channel"

local M = {}

-- An environment list as core.proc.spawn takes it, held in C once per
-- list (core.proc.env): the list a depth's children share is not read
-- again on every spawn.
local held = setmetatable({}, { __mode = "k" })
function M.env(env)
  local h = held[env]
  if not h then
    h = core.proc.env(env)
    held[env] = h
  end
  return h
end

-- The last command line made for each agent (its config table: a
-- changed file is new tables), and what it was made of: a dispatch that
-- differs only in its fresh session id gets a copy with that id, not a
-- new one from core.claude.argv and channel.argv (the same every time).
local made = setmetatable({}, { __mode = "k" })

--- The argv of a claude child for req (path: the CLI; resume, fresh: the
--- session resumed or started; eff: ad.domain.request.effective; live:
--- the live transport's flags), or nil and core.claude.argv's refusal.
function M.argv(req, path, resume, fresh, eff, live)
  local agent = req.agent
  local stream = req.stream or live
  local relay = live and req.relay or false
  local m = made[agent]
  if m and m.path == path and m.stream == stream and m.resume == resume and
      m.fresh == (fresh ~= nil) and m.budget == eff.budget and
      m.permission_mode == eff.permission_mode and m.allowed == eff.allowed and
      m.disallowed == eff.disallowed and m.model == agent.model and m.live == live and
      m.relay == relay and req.response_schema == nil then
    local argv = { table.unpack(m.argv) }
    if m.at then argv[m.at] = fresh end
    return argv
  end
  local argv, refusal = core.claude.argv{ claude = path, prompt_on_stdin = true,
    stream = stream, resume = resume, session_id = fresh,
    budget = eff.budget, model = agent.model,
    permission_mode = eff.permission_mode, json_schema = req.response_schema,
    allowed = eff.allowed,
    disallowed = eff.disallowed }
  if not argv then return nil, refusal end
  if live then argv = channel.argv(argv, { relay = req.relay }) end
  if req.response_schema == nil then
    local at
    if fresh then
      for i = 2, #argv do
        if argv[i] == fresh and argv[i - 1] == "--session-id" then at = i end
      end
      if not at then return argv end -- (no place for the id: made anew each time)
    end
    made[agent] = { path = path, stream = stream, resume = resume, fresh = fresh ~= nil,
      budget = eff.budget, permission_mode = eff.permission_mode, allowed = eff.allowed,
      disallowed = eff.disallowed, model = agent.model, live = live, relay = relay,
      argv = { table.unpack(argv) }, at = at }
  end
  return argv
end

return M
