--- Cross-process messages to the process that owns a job (a server, a
--- detached job runner, a keeper): steer a running child, interrupt it,
--- answer its permission requests.
---
---   inbox.post(job_id, msg [, opts]) -> reply | nil, why, code
---       msg = {kind = "steer"|"interrupt"|"approve"|..., ...fields}; opts:
---       by (who sends it: recorded by the handler), wait (seconds to wait
---       for the owner's reply, default 10). reply is what the owner's
---       handler returned (a table, e.g. {ok = true} or {ok = false,
---       error = "..."}). code: "not_running" (no owner serves the job's
---       inbox: the job is not running here or its owner is gone),
---       "no_answer" (the owner did not answer in time), "io".
---   inbox.serve(job_id, handlers) -> server   (the owner: a task watches
---       the inbox and calls handlers[msg.kind](msg) for each message, in
---       the order they were posted; the handler's return value (a table)
---       is the poster's reply; an unknown kind is answered {ok = false})
---   server:close()   stops serving (posts are refused from then on)
---   inbox.sweep() -> n   removes the inboxes their owner left behind (it
---       was killed): no live owner, and a job that has ended or is gone
---
--- Files: <jobs dir>/inbox/<id>/ (0700, this user's, not a link, in a
--- directory of the same kind; removed when the job ends) holds
--- `owner` ({pid, start} of the serving process, while it serves), one
--- file per message `m-<time>-<n>.json` (0600, written atomically), the
--- owner's answers `r-<message file>` and a doorbell file `bell` that a
--- poster rewrites after each message (the owner watches it: no polling).
--- A message that is a symbolic link, belongs to another user or is larger
--- than MAX_MESSAGE bytes is removed unread. Each message is recorded on the
--- job (who, what, when) by the handler that applies it.
local core = require "ad.core"
local json = require "ad.infra.json"
local jobs = require "ad.storage.jobs"

local M = {}

M.MAX_MESSAGE = 64 * 1024
M.WAIT = 10

local function inbox_root()
  return jobs.dir() .. "/inbox"
end

local function inbox_dir(id)
  return inbox_root() .. "/" .. id
end

-- The inbox directory, when it is this user's own, private and not a
-- link; else nil and why.
local function checked_one(dir)
  local kind, _, mode, uid = core.fs.stat(dir)
  if not kind then return nil, "missing" end
  local real = core.fs.realpath(dir)
  local parent = core.fs.realpath(dir:match("^(.*)/[^/]+$"))
  if kind ~= "dir" or not real or not parent or real ~= parent .. "/" .. dir:match("[^/]+$") then
    return nil, "the inbox " .. dir .. " is not a directory (a symbolic link?)"
  end
  if uid ~= core.sys.getuid() or (mode & 63) ~= 0 then
    return nil, "the inbox " .. dir .. " must be a directory of this user that " ..
      "nobody else can enter (mode 0700)"
  end
  return dir
end

local function checked(dir)
  local root, why = checked_one(dir:match("^(.*)/[^/]+$"))
  if not root then return nil, why end
  return checked_one(dir)
end

-- A file of the inbox, read when it is a regular file of this user (not a
-- link) of at most MAX_MESSAGE bytes; else nil.
local function read_own(path)
  local data = core.fs.read_file(path, M.MAX_MESSAGE, true)
  if not data then return nil end
  local kind, _, _, uid = core.fs.stat(path)
  if kind ~= "file" or uid ~= core.sys.getuid() then return nil end
  return data
end

local function owner_of(dir)
  local text = read_own(dir .. "/owner")
  local o = text and json.decode(text)
  local pid = type(o) == "table" and math.tointeger(o.pid)
  if not pid or pid <= 1 or type(o.start) ~= "number" then return nil end
  local _, start = core.jobs.proc_identity(pid)
  if start ~= o.start then return nil end
  return { pid = pid, start = start }
end

local seq = 0
local function message_name()
  seq = seq + 1
  return string.format("m-%016x-%d-%d.json", math.floor(core.task.time() * 1e6),
    core.sys.getpid(), seq)
end

function M.post(id, msg, opts)
  opts = opts or {}
  if not jobs.valid(id) then return nil, "invalid job id: " .. tostring(id), "invalid" end
  local ok, dir = pcall(inbox_dir, id)
  if not ok then return nil, type(dir) == "table" and dir.message or tostring(dir), "io" end
  local d, why = checked(dir)
  if not d then
    if why == "missing" then
      return nil, "job " .. id .. " is not running in any process that takes messages", "not_running"
    end
    return nil, why, "io"
  end
  local owner = owner_of(dir)
  if not owner then
    return nil, "job " .. id .. " is not running (no process serves its inbox)", "not_running"
  end
  local name = message_name()
  local m = {}
  for k, v in pairs(msg) do m[k] = v end
  m.id, m.by, m.at = name, opts.by or m.by, core.task.time()
  local wrote, err = core.fs.write_atomic(dir .. "/" .. name, json.encode(m), 384, true)
  if not wrote then return nil, "cannot post to job " .. id .. ": " .. tostring(err), "io" end
  local reply_name = "r-" .. name
  local w = core.jobs.watch(dir, reply_name, owner.pid, owner.start)
  core.fs.write_atomic(dir .. "/bell", name, 384, true)
  local deadline = core.task.now() + (opts.wait or M.WAIT)
  local reply
  while true do
    local text = read_own(dir .. "/" .. reply_name)
    if text then
      core.fs.unlink(dir .. "/" .. reply_name)
      reply = json.decode(text)
      if not owner_of(dir) then core.fs.rmdir(dir) end -- the owner is done with it
      break
    end
    local left = deadline - core.task.now()
    if left <= 0 or not owner_of(dir) then break end
    w:wait(left)
    w:close()
    w = core.jobs.watch(dir, reply_name, owner.pid, owner.start)
  end
  w:close()
  if reply == nil then
    -- Not taken: withdrawn, so it cannot be applied after this answer.
    if core.fs.unlink(dir .. "/" .. name) then
      return nil, "job " .. id .. "'s owner did not take the message", "no_answer"
    end
    return nil, "job " .. id .. "'s owner took the message but did not answer in time", "no_answer"
  end
  if type(reply) ~= "table" then reply = { ok = false, error = "unreadable answer" } end
  return reply
end

local Server = {}
Server.__index = Server

-- Every waiting message, oldest first, each handled and answered.
local function drain(s)
  local names = core.fs.listdir(s.dir) or {}
  local todo = {}
  for _, n in ipairs(names) do
    if n:match("^m%-[%x]+%-%d+%-%d+%.json$") then todo[#todo + 1] = n end
  end
  table.sort(todo)
  for _, n in ipairs(todo) do
    local path = s.dir .. "/" .. n
    local text = read_own(path)
    core.fs.unlink(path) -- taken (or refused: a link, another user's, too big)
    local msg = text and json.decode(text)
    if type(msg) == "table" and type(msg.kind) == "string" then
      local h = s.handlers[msg.kind]
      local reply
      if h then
        local ok, r = pcall(h, msg)
        reply = ok and (type(r) == "table" and r or { ok = true }) or
          { ok = false, error = type(r) == "table" and r.message or tostring(r) }
      else
        reply = { ok = false, error = "this job does not take '" .. msg.kind .. "' messages" }
      end
      core.fs.write_atomic(s.dir .. "/r-" .. n, json.encode(reply), 384, true)
    end
  end
end

function M.serve(id, handlers)
  if not jobs.valid(id) then return nil, "invalid job id: " .. tostring(id) end
  local dir = inbox_dir(id)
  local ok, err = core.fs.mkdirs(inbox_root(), 448)
  if ok then ok, err = core.fs.mkdirs(dir, 448) end
  if not ok then return nil, "cannot create the inbox of job " .. id .. ": " .. tostring(err) end
  local d, why = checked(dir)
  if not d then return nil, why end
  local pid = core.sys.getpid()
  local _, start = core.jobs.proc_identity(pid)
  local s = setmetatable({ dir = dir, handlers = handlers, id = id }, Server)
  core.fs.write_atomic(dir .. "/owner", json.encode({ pid = pid, start = start }), 384, true)
  s.task = core.task.spawn(function()
    while not s.closed do
      local w = core.jobs.watch(dir, "bell")
      s.watch = w
      local okd, e = pcall(drain, s)
      if not okd then io.stderr:write("agent-dispatch: inbox of job ", id, ": ", tostring(e), "\n") end
      if s.closed or not w then break end
      local r, werr = w:wait(3600)
      w:close()
      s.watch = nil
      if not r and werr == "cancelled" then return end
    end
    -- Gone once empty (a reply its poster has not read yet keeps it: the
    -- poster removes it then).
    core.fs.rmdir(dir)
  end)
  return s
end

-- The files an inbox holds (what M.sweep may remove of one).
local function inbox_file(n)
  return n == "owner" or n == "bell" or n:match("^r?%-?m%-[%x]+%-%d+%-%d+%.json$") ~= nil
end

function M.sweep()
  local root = inbox_root()
  if not checked_one(root) then return 0 end
  local n = 0
  for _, id in ipairs(core.fs.listdir(root) or {}) do
    local dir = root .. "/" .. id
    -- A live owner keeps its inbox; so does a job not ended yet (its
    -- owner may be about to write the owner file).
    if jobs.valid(id) and checked_one(dir) and not owner_of(dir) then
      local okr, rec = pcall(jobs.get, id)
      if okr and (rec == nil or jobs.TERMINAL[rec.status]) then
        for _, f in ipairs(core.fs.listdir(dir) or {}) do
          if inbox_file(f) then core.fs.unlink(dir .. "/" .. f) end
        end
        if core.fs.rmdir(dir) then n = n + 1 end
      end
    end
  end
  return n
end

function Server:close()
  if self.closed then return end
  self.closed = true
  core.fs.unlink(self.dir .. "/owner")
  core.fs.unlink(self.dir .. "/bell")
  if self.watch then self.watch:fire() end
end

return M
