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

return M
