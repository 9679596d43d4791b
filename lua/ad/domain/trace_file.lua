--- The trace context of a kept live process (a warm pool process, a live
--- session's process): its environment is fixed when it is spawned, before
--- anyone knows which request it will serve, so it gets a private context
--- file instead of AGENT_DISPATCH_TRACE. The file is named in its
--- environment (AGENT_DISPATCH_TRACE_FILE) and holds the value
--- AGENT_DISPATCH_TRACE would have (trace id, parent span, tree cap and
--- the reserved spans of the tree's ledger), written by the server each
--- time it hands the process a request (each turn of a session: each turn
--- is a span of its own). The depth stays in AGENT_DISPATCH_DEPTH: it is
--- the same for every request of the process.
---
--- Files: <jobs dir>/ctx/<server pid>-<n>-<random>.ctx (beside the job
--- inboxes and the live process lists of ad.domain.live), the directory
--- 0700 and the user's own, each file 0600, replaced atomically (a link
--- at the path is replaced, never followed), removed when the process
--- ends; files of servers that are gone are removed when a server creates
--- its first one. A reader (ad.domain.trace, in an agent-dispatch started
--- inside that process) trusts only a regular file of its own user that
--- nobody else may read or write, reached without a symbolic link
--- anywhere on its path; anything else counts as no context.
local core = require "ad.core"

local M = {}

M.ENV = "AGENT_DISPATCH_TRACE_FILE"

--- Bytes read at most (a context is one short line).
M.MAX = 4096

local made -- the checked directory, once created by this process
local count = 0

-- Removes the files of servers that no longer run.
local function prune(dir)
  for _, n in ipairs(core.fs.listdir(dir) or {}) do
    local pid = math.tointeger(tonumber(n:match("^(%d+)%-")))
    if pid and pid ~= core.sys.getpid() and not core.fs.stat("/proc/" .. pid) then
      core.fs.unlink(dir .. "/" .. n)
    end
  end
end

local function ensure_dir()
  if made then return made end
  local base = require("ad.storage.jobs").dir() -- refused unless private
  local dir = base .. "/ctx"
  local ok, err = core.fs.mkdirs(dir, 448) -- 0700
  if not ok then return nil, err end
  local kind, _, mode, uid = core.fs.stat(dir)
  local real, rbase = core.fs.realpath(dir), core.fs.realpath(base)
  if kind ~= "dir" or uid ~= core.sys.getuid() or (mode & 63) ~= 0 or
      not real or real ~= (rbase == "/" and "" or rbase) .. "/ctx" then
    return nil, "the context directory " .. dir .. " must be a directory of this user " ..
      "that nobody else can enter (mode 0700)"
  end
  prune(real)
  made = real -- as the reader resolves it: no link, no "//" or ".."
  return real
end

--- A new context file path for a process about to be spawned (the file
--- is written by M.write), or nil and why (the process then runs without
--- one: dispatches made inside it start trees of their own).
function M.new_path()
  local ok, dir, why = pcall(ensure_dir)
  if not ok then return nil, type(dir) == "table" and dir.message or tostring(dir) end
  if not dir then return nil, why end
  count = count + 1
  return dir .. "/" .. core.sys.getpid() .. "-" .. count .. "-" ..
    core.text.hex32():sub(1, 8) .. ".ctx"
end

--- Writes the context of the request the process serves now (value: an
--- AGENT_DISPATCH_TRACE value, or nil for none: the file is emptied).
function M.write(path, value)
  return core.fs.write_atomic(path, value or "", 384, true) -- 0600, no link followed
end

function M.remove(path)
  if path then core.fs.unlink(path) end
end

--- The context text in the file at path, or nil when there is none or the
--- file is not trusted (a link on the way, another owner, readable or
--- writable by others, not a regular file).
function M.read(path)
  if type(path) ~= "string" or path:sub(1, 1) ~= "/" then return nil end
  -- realpath resolves every link on the way: equal means none.
  if core.fs.realpath(path) ~= path then return nil end
  local kind, _, mode, uid = core.fs.stat(path)
  if kind ~= "file" or uid ~= core.sys.getuid() or (mode & 63) ~= 0 then return nil end
  local data = core.fs.read_trusted(path, M.MAX)
  if not data or data == "" then return nil end
  return (data:gsub("%s+$", ""))
end

return M
