--- `agent-dispatch run [--json] [--timeout SECONDS] SCRIPT.lua [ARGS...]`
--- (the options may also follow the script; `--` passes the rest verbatim):
--- runs a batch script as a task with the agent_dispatch module. The
--- script receives its arguments as `...` and as `arg`; its return value
--- decides the exit status (false -> 1, an integer -> that status,
--- anything else -> 0) and is printed as JSON with --json. A runtime error
--- prints file:line and the message and exits 1; Ctrl-C cancels every
--- running child and exits 130; --timeout cancels the whole script the
--- same way after that many seconds and exits 124.
local core = require "ad.core"
local json = require "ad.infra.json"

local M = {}

--- Progress on stderr: on a terminal, one live line per running dispatch
--- (redrawn in place); otherwise plain lines when a dispatch starts,
--- reports progress and ends.
local function reporter(tty)
  local running, order, n = {}, {}, 0
  local drawn = 0
  local function redraw()
    local out = {}
    if drawn > 0 then out[#out + 1] = ("\27[%dA"):format(drawn) end
    local now = core.task.now()
    for _, h in ipairs(order) do
      out[#out + 1] = ("\27[2K  %s %-14s %4ds  %s\n"):format(h.done and (h.ok and "✓" or "✗") or "…",
        h.name, math.floor((h.t1 or now) - h.t0), (h.last or ""):gsub("%s+", " "):sub(1, 60))
    end
    drawn = #order
    io.stderr:write(table.concat(out))
  end
  return {
    start = function(name, req)
      n = n + 1
      local h = { id = n, name = name, t0 = core.task.now() }
      running[h] = true
      if tty then order[#order + 1] = h; redraw()
      else io.stderr:write(("[%s] started: %s\n"):format(name, (req.task or ""):gsub("\n", " "):sub(1, 80))) end
      return h
    end,
    progress = function(h, line)
      h.last = line
      if tty then redraw() else io.stderr:write(("[%s] %s\n"):format(h.name, line:sub(1, 200))) end
    end,
    finish = function(h, r)
      h.done, h.t1 = true, core.task.now()
      h.ok = r and r.success
      running[h] = nil
      if not h.ok then h.last = r and (r.error or ""):match("^[^\n]*") or "stopped" end
      if tty then redraw()
      else
        io.stderr:write(("[%s] %s in %.1fs%s\n"):format(h.name, h.ok and "done" or "failed",
          h.t1 - h.t0, h.ok and "" or (": " .. (h.last or ""))))
      end
    end,
  }
end

function M.main(argv)
  -- Our options may come before or after the script (a nightly job reads
  -- naturally as `run review.lua --json`); after a `--` everything goes
  -- to the script as it is.
  local as_json, limit = false, nil
  local rest = {}
  local i, verbatim = 1, false
  while i <= #argv do
    local a = argv[i]
    if verbatim then
      rest[#rest + 1] = a
    elseif a == "--" then
      verbatim = true
    elseif a == "--json" then
      as_json = true
    elseif a == "--timeout" or a:match("^%-%-timeout=") then
      local v = a:match("^%-%-timeout=(.*)$")
      if not v then i = i + 1; v = argv[i] end
      limit = tonumber(v)
      if not limit or limit <= 0 then
        io.stderr:write("Error: --timeout needs a positive number of seconds\n")
        return 2
      end
    else
      rest[#rest + 1] = a
    end
    i = i + 1
  end
  local path = table.remove(rest, 1)
  if not path then
    io.stderr:write("Usage: agent-dispatch run [--json] [--timeout SECONDS] SCRIPT.lua [ARGS...]\n")
    return 2
  end
  local src, msg = core.fs.read_file(path)
  if not src then
    io.stderr:write("Error: cannot read script ", path, ": ", msg, "\n")
    return 1
  end
  local chunk, lerr = load(src, "@" .. path, "t")
  if not chunk then
    io.stderr:write("Error: ", lerr, "\n")
    return 1
  end
  local api = require "agent_dispatch"
  api.args = rest
  if os.getenv("AGENT_DISPATCH_QUIET") == nil then
    require("ad.domain.runner").observer = reporter(core.sys.isatty(2))
  end
  -- Hook scripts apply to scripts too (their custom tools are unused here).
  require("ad.domain.plugins").load(function() end, {})
  _G.arg = { [0] = path, table.unpack(rest) }
  local main = core.task.spawn(function()
    return xpcall(chunk, function(e)
      if type(e) == "table" and e.type == "cancelled" then return e end
      return debug.traceback(tostring(e), 2)
    end, table.unpack(rest))
  end)
  local watcher = core.task.spawn(function()
    local sig = core.signal.wait()
    if sig then main:cancel() end
    return sig
  end)
  local timed_out = false
  local timer = limit and core.task.spawn(function()
    if core.task.sleep(limit) then
      timed_out = true
      io.stderr:write("agent-dispatch: the script ran longer than ", tostring(limit),
        " s (--timeout); stopping it\n")
      main:cancel()
    end
  end)
  local ok, pcall_ok, value = main:wait()
  local sig_done = watcher:done()
  watcher:cancel()
  if timer then timer:cancel() end
  -- Background jobs the script left running are stopped, not orphaned.
  if package.loaded["ad.domain.async"] then package.loaded["ad.domain.async"].shutdown() end
  if timed_out then return 124 end
  if not ok then
    -- The main task itself was cancelled before it could catch anything.
    io.stderr:write("agent-dispatch: interrupted\n")
    return 130
  end
  if not pcall_ok then
    if type(value) == "table" and value.type == "cancelled" then
      io.stderr:write("agent-dispatch: interrupted; every running child was stopped\n")
      return 130
    end
    io.stderr:write("Error: ", tostring(value), "\n")
    return 1
  end
  if sig_done then return 130 end
  if as_json then
    io.stdout:write(json.encode(value == nil and json.null or value), "\n")
  end
  if value == false then return 1 end
  if math.type(value) == "integer" then return value end
  return 0
end

return M
