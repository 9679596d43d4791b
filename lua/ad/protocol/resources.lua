--- Jobs as MCP resources: `agent-dispatch://jobs/<id>` is the JSON of a
--- job's record (status, timestamps, progress tail, and the result once it
--- ended). resources/list pages through the recent jobs, resources/read
--- reads one; a client subscribes (legacy resources/subscribe, or the
--- resourceSubscriptions of a 2026 subscriptions/listen) and gets
--- notifications/resources/updated when the job changes state.
---
--- Changes are seen through the job store, whoever makes them: a worker
--- in this server, a detached job runner, another server or the CLI. A
--- status change always rewrites the store's index (<jobs dir>/.index), so
--- one inotify watch on that file wakes the watcher (Watch below), which
--- re-reads only the subscribed records.
local core = require "ad.core"
local json = require "ad.infra.json"
local util = require "ad.infra.util"
local jobs = util.lazy "ad.storage.jobs"

local M = {}

M.PREFIX = "agent-dispatch://jobs/"
M.MIME = "application/json"
--- resources/list: jobs per page, and the most recent jobs listed at all.
M.PAGE, M.RECENT = 50, 500
--- Seconds between re-reads when no change is seen: a safety net for a
--- status change whose index update failed (a full disk); inotify wakes
--- the watcher at once otherwise.
M.RECHECK = 10

function M.uri(id) return M.PREFIX .. id end

--- The job id of a job resource URI, or nil.
function M.job_id(uri)
  if type(uri) ~= "string" or uri:sub(1, #M.PREFIX) ~= M.PREFIX then return nil end
  local id = uri:sub(#M.PREFIX + 1)
  return jobs.valid(id) and id or nil
end

--- The record of a job resource URI, or nil (not a job URI, no such job).
function M.record(uri)
  local id = M.job_id(uri)
  return id and jobs.get(id) or nil
end

local function resource(rec)
  local what = util.cut((tostring(rec.task or ""):gsub("%s+", " ")), 100)
  return json.object({ uri = M.uri(rec.id), name = "job " .. rec.id,
    description = tostring(rec.agent) .. " (" .. tostring(rec.status) .. "): " .. what,
    mimeType = M.MIME }, { "uri", "name", "description", "mimeType" })
end

--- One page of resources/list: the recent jobs, newest first. cursor is
--- nil or the one a previous page returned. Returns resources, nextCursor
--- (or nil), or nil, message for a bad cursor.
function M.list(cursor)
  local from = 0
  if cursor ~= nil then
    from = type(cursor) == "string" and cursor:match("^jobs:(%d+)$") and
      tonumber(cursor:match("^jobs:(%d+)$"))
    if not from or from > M.RECENT then return nil, "unknown cursor" end
  end
  local recs = jobs.list(nil, math.min(from + M.PAGE + 1, M.RECENT))
  local out = json.array()
  for i = from + 1, math.min(from + M.PAGE, #recs) do out[#out + 1] = resource(recs[i]) end
  local next_cursor = #recs > from + M.PAGE and ("jobs:" .. (from + M.PAGE)) or nil
  return out, next_cursor
end

--- The contents of resources/read for a record.
function M.contents(rec)
  return json.array{ json.object({ uri = M.uri(rec.id), mimeType = M.MIME,
    text = json.encode(rec) }, { "uri", "mimeType", "text" }) }
end

-- ------------------------------------------------------------ watch --

--- A watch over job records. watch:add(id, key, seen) follows a job for
--- a subscriber key from the status it saw (seen; default: the current
--- one) and returns the current record (nil: no such job). On each later
--- status change, changed(id, rec, key) runs once per subscriber key.
--- A job that ended is followed no further. watch:remove(id, key) and
--- watch:drop(key) stop following; the watcher task runs only while
--- something is followed.
local Watch = {}
Watch.__index = Watch

function M.watch(changed)
  return setmetatable({ changed = changed, follow = {} }, Watch)
end

function Watch:add(id, key, seen)
  local rec = jobs.get(id)
  if not rec then return nil end
  seen = seen or rec.status
  if jobs.TERMINAL[seen] then return rec end -- it never changes again
  self.follow[id] = self.follow[id] or {}
  self.follow[id][key] = seen
  if not self.task then
    self:start()
  elseif seen ~= rec.status then
    self:wake() -- news already: the watcher checks again at once
  end
  return rec
end

function Watch:remove(id, key)
  local f = self.follow[id]
  if not f then return end
  f[key] = nil
  if next(f) == nil then self.follow[id] = nil end
  if next(self.follow) == nil then self:stop() end
end

--- Stops following key everywhere (a subscriber that went away).
function Watch:drop(key)
  for id in pairs(util.copy(self.follow)) do self:remove(id, key) end
end

-- Re-reads the followed records; reports each status change to each
-- subscriber that has not seen it.
function Watch:check()
  for id, keys in pairs(util.copy(self.follow)) do
    local ok, rec = pcall(jobs.get, id)
    if ok and rec then
      local changed = {}
      for key, seen in pairs(keys) do
        if rec.status ~= seen then
          keys[key] = rec.status
          changed[#changed + 1] = key
        end
      end
      if jobs.TERMINAL[rec.status] then self.follow[id] = nil end
      for _, key in ipairs(changed) do pcall(self.changed, id, rec, key) end
    elseif ok then
      self.follow[id] = nil -- deleted (retention): nothing more to say
    end
  end
end

-- Wakes the watcher for a check now (a subscriber with news already).
function Watch:wake()
  if self.armed then self.armed:fire() end
end

function Watch:start()
  if self.task then return end
  local me
  me = core.task.spawn(function()
    local dir = jobs.dir()
    while next(self.follow) ~= nil do
      -- Armed before the check: a change made while the records are read
      -- still ends the next wait at once (as does wake()).
      local ok, w = pcall(core.jobs.watch, dir, ".index")
      self.armed = ok and w or nil
      self:check()
      if next(self.follow) == nil then break end
      if self.armed then self.armed:wait(M.RECHECK) else core.task.sleep(0.5) end
      if core.task.cancelled() then break end
      if self.armed then self.armed:close() end
      self.armed = nil
    end
    if self.task == me then
      if self.armed then self.armed:close() end
      self.task, self.armed = nil, nil
    end
  end)
  self.task = me
end

function Watch:stop()
  local t, w = self.task, self.armed
  self.task, self.armed = nil, nil
  if t then t:cancel() end
  if w then w:close() end
end

-- --------------------------------------------- the server's requests --
-- The resources/* requests and the resource subscriptions of a server
-- (ad.protocol.mcp, either era), here so that the server loads them at
-- the first such request, not at start.

local META_SUB = "io.modelcontextprotocol/subscriptionId"

local TEMPLATE_DESC = "An agent-dispatch job (dispatch_async, an MCP task): its record " ..
  "as JSON - status, progress tail, and the result once it ended. Subscribe to hear " ..
  "when its status changes."

--- The server's job watch (server.watch, created on first use): it pushes
--- notifications/resources/updated to subscribers (legacy
--- resources/subscribe: key "legacy"; a 2026 subscriptions/listen: the
--- listen's in-flight key) and notifications/tasks/status for legacy
--- MCP tasks (key "task").
function M.server_watch(server)
  if server.watch then return server.watch end
  server.watch = M.watch(function(id, rec, key)
    if key == "task" then
      return server:notify("notifications/tasks/status",
        require("ad.protocol.mcp_tasks").task_of(rec))
    end
    local params = json.object({ uri = M.uri(id) }, { "uri", "_meta" })
    if key ~= "legacy" then
      local sub = server.listens[key]
      if sub == nil then return end
      params._meta = json.object({ [META_SUB] = sub }, { META_SUB })
    end
    server:notify("notifications/resources/updated", params)
  end)
  return server.watch
end

-- A result with the given keys in order; in the modern era with the cache
-- hints (ttlMs, cacheScope) and resultType.
local function cacheable(server, id, t, keys, scope, modern)
  local order = { "resultType" }
  for _, k in ipairs(keys) do order[#order + 1] = k end
  if modern then
    t.ttlMs, t.cacheScope = 0, scope
    order[#order + 1] = "ttlMs"; order[#order + 1] = "cacheScope"; order[#order + 1] = "_meta"
  end
  return server:result(id, json.object(t, order), modern)
end

-- An unknown resource: -32002 in the legacy era, -32602 in 2026-07-28
-- (which forbids -32002).
local function missing(server, id, uri, modern)
  local data = json.object({ uri = type(uri) == "string" and uri or json.null }, { "uri" })
  if modern then
    return server:error(id, -32602, "Invalid params: unknown resource " ..
      util.repr(tostring(uri)), data)
  end
  return server:error(id, -32002, "Resource not found", data)
end

-- resources/list, resources/templates/list, resources/read (both eras).
local function read_method(server, id, m, params, modern)
  if m == "resources/list" then
    local cursor = params.cursor
    if cursor == "" then cursor = nil end -- the first page
    local list, next_cursor = M.list(cursor)
    if not list then return server:error(id, -32602, "Invalid params: " .. next_cursor) end
    return cacheable(server, id, { resources = list, nextCursor = next_cursor },
                     { "resources", "nextCursor" }, "private", modern)
  elseif m == "resources/templates/list" then
    if params.cursor ~= nil and params.cursor ~= "" then
      return server:error(id, -32602, "Invalid params: unknown cursor")
    end
    local t = json.object({ uriTemplate = M.PREFIX .. "{job_id}", name = "job",
      description = TEMPLATE_DESC, mimeType = M.MIME },
      { "uriTemplate", "name", "description", "mimeType" })
    return cacheable(server, id, { resourceTemplates = json.array{ t } }, { "resourceTemplates" },
                     "public", modern)
  end
  local rec = M.record(params.uri)
  if not rec then return missing(server, id, params.uri, modern) end
  return cacheable(server, id, { contents = M.contents(rec) }, { "contents" }, "private", modern)
end

-- Legacy resources/subscribe and resources/unsubscribe.
local function subscription(server, id, m, params)
  local job = M.job_id(params.uri)
  if m == "resources/unsubscribe" then
    if job and server.watch then server.watch:remove(job, "legacy") end
    return server:result(id, json.object({}, {}))
  end
  if not (job and M.server_watch(server):add(job, "legacy")) then
    return missing(server, id, params.uri, false)
  end
  return server:result(id, json.object({}, {}))
end

--- Answers a resources/* request m (list, templates/list, read; in the
--- legacy era also subscribe, unsubscribe). A job store that cannot be
--- read (an I/O error) is an internal error of this request only.
function M.request(server, id, m, params, modern)
  local fn = (m == "resources/subscribe" or m == "resources/unsubscribe")
    and subscription or read_method
  local ok, err = pcall(fn, server, id, m, params, modern)
  if not ok then
    server:error(id, -32603, "Internal error: " ..
      tostring(type(err) == "table" and err.message or err))
  end
end

--- A 2026 subscriptions/listen under in-flight key: our tool set is
--- static, so only resourceSubscriptions (job resources) are honoured;
--- the listen stays open until the client cancels it or the server stops.
function M.listen(server, id, key, params)
  if server.inflight[key] then
    return server:error(id, -32600, "Invalid Request: id " .. key:sub(3) ..
      " is already in use by a request in flight")
  end
  local asked = type(params.notifications) == "table" and params.notifications or {}
  local honoured = json.object({}, { "resourceSubscriptions" })
  local uris = type(asked.resourceSubscriptions) == "table" and asked.resourceSubscriptions
  server.listens[key] = id
  server.inflight[key] = { listen = true, cancelled = false }
  if uris then
    honoured.resourceSubscriptions = json.array()
    for _, uri in ipairs(uris) do
      local job = M.job_id(uri)
      local ok, rec = pcall(function() return job and M.server_watch(server):add(job, key) end)
      if ok and rec then
        honoured.resourceSubscriptions[#honoured.resourceSubscriptions + 1] = uri
      end
    end
  end
  return server:send(json.object({ jsonrpc = "2.0",
    method = "notifications/subscriptions/acknowledged",
    params = json.object({ notifications = honoured,
      _meta = json.object({ [META_SUB] = id }, { META_SUB }) },
      { "notifications", "_meta" }) }, { "jsonrpc", "method", "params" }))
end

return M
