--- Marks of session turns shared by every agent-dispatch process using one
--- jobs directory, in <jobs dir>/sessions/ (owner-only, like the records):
---
--- <sid>.turn: a token naming the last turn that changed session sid's
--- transcript. A process kept alive for a session (ad.domain.live)
--- remembers the token it made; when the token on disk is another, some
--- other process (another server, the CLI) ran a turn since, which the kept
--- process never saw: the next turn resumes the transcript instead.
---
--- <sid>.job: the id of a job that runs a turn of sid after its server
--- handed it off (ad.domain.keeper); a later turn, in any process, waits
--- for that job first (ad.domain.runner). A mark whose job has ended is
--- removed by the next reader.
---
--- Best effort throughout: a mark that cannot be written or read costs a
--- resume (a kept process is not reused), never a wrong reuse. Session ids
--- the CLI makes are UUIDs; anything else that could not be a plain file
--- name gets no mark.
local core = require "ad.core"

local M = {}

local function dir()
  local ok, d = pcall(function() return require("ad.storage.jobs").dir() end)
  return ok and d .. "/sessions" or nil
end

local function path(sid, ext)
  if type(sid) ~= "string" or #sid > 128 or not sid:match("^%w[%w%-]*$") then return nil end
  local d = dir()
  return d and d .. "/" .. sid .. ext or nil
end

local function read(p)
  local text = p and core.fs.read_file(p, 256, true)
  return text and text:match("^(%x+)\n?$") or nil
end

local function write(p, text)
  if not p then return false end
  local d = p:match("^(.*)/[^/]+$")
  if not core.fs.mkdirs(d, 448) then return false end
  return core.fs.write_atomic(p, text .. "\n", 384, true) == true
end

--- The token of session sid's last turn, or nil (none recorded).
function M.turn(sid)
  return read(path(sid, ".turn"))
end

--- Records a new turn of session sid (made by this process) and returns
--- its token, or nil when it could not be recorded.
function M.new_turn(sid)
  local token = core.text.hex32()
  return write(path(sid, ".turn"), token) and token or nil
end

--- Records that job job_id runs a turn of session sid.
function M.hand(sid, job_id)
  return write(path(sid, ".job"), job_id)
end

--- The id of the job recorded as running a turn of sid, or nil.
function M.handed(sid)
  return read(path(sid, ".job"))
end

--- Removes the hand-off mark of sid when it still names job_id.
function M.unhand(sid, job_id)
  local p = path(sid, ".job")
  if p and read(p) == job_id then core.fs.unlink(p) end
end

--- Removes the marks not written for max_age seconds (retention, gc).
function M.sweep(max_age)
  local d = dir()
  local names = d and core.fs.listdir(d)
  if not names then return end
  local cutoff = core.task.time() - max_age
  for _, name in ipairs(names) do
    if name:match("^%w[%w%-]*%.turn$") or name:match("^%w[%w%-]*%.job$") then
      local kind, mtime = core.fs.stat(d .. "/" .. name)
      if kind == "file" and mtime < cutoff then core.fs.unlink(d .. "/" .. name) end
    end
  end
end

return M
