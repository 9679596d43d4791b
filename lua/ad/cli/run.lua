--- `agent-dispatch run [--json] [--verbose] [--timeout SECONDS] SCRIPT.lua [ARGS...]`
--- (the options may also follow the script; `--` passes the rest verbatim):
--- runs a batch script as a task with the agent_dispatch module. The
--- script receives its arguments as `...` and as `arg`; its return value
--- decides the exit status (false -> 1, an integer -> that status,
--- anything else -> 0) and is printed as JSON with --json. A runtime error
--- prints the script's file:line and the message (the traceback with
--- --verbose) and exits 1; Ctrl-C cancels every
--- running child and exits 130; --timeout cancels the whole script the
--- same way after that many seconds and exits 124.
local core = require "ad.core"
local json = require "ad.infra.json"
local aggregate = require "ad.domain.aggregate"

local M = {}

--- Progress on stderr: on a terminal, one live row per dispatch (redrawn
--- in place, ticking once a second): queued until it has a concurrency
--- slot, then its run time (queue time not counted) and its last progress
--- line; the aggregation of a fan-out is labelled as such. Otherwise plain
--- lines when a dispatch is queued, starts, reports progress and ends.
--- verbose: every progress line in full (the agent's streamed text).
local function reporter(tty, verbose)
  local order, live = {}, 0
  local drawn, ticker = 0, nil
  local function row(h, now)
    local mark = h.done and (h.ok and "✓" or "✗") or (h.t0 and "…" or "·")
    local time = h.t0 and ("%4ds"):format(math.floor((h.t1 or now) - h.t0)) or "queued"
    return ("\27[2K  %s %-14s %6s  %s\n"):format(mark, h.label, time,
      (h.last or ""):gsub("%s+", " "):sub(1, 60))
  end
  local function redraw(above)
    local out = {}
    if drawn > 0 then out[#out + 1] = ("\27[%dA"):format(drawn) end
    if above then out[#out + 1] = "\27[2K" .. above .. "\n" end
    local now = core.task.now()
    for _, h in ipairs(order) do out[#out + 1] = row(h, now) end
    drawn = #order
    io.stderr:write(table.concat(out))
  end
  local function tick()
    if ticker or not tty then return end
    ticker = core.task.spawn(function()
      while live > 0 and core.task.sleep(1) do redraw() end
      ticker = nil
    end)
  end
  local function line(h, text) io.stderr:write(("[%s] %s\n"):format(h.label, text)) end
  local function label(name, req)
    if req.caller == aggregate.CALLER and req.goal == aggregate.GOAL then
      return name .. " (aggregation)"
    end
    return name
  end
  local B = {}
  function B.start(name, req)
    local st = core.limiter.stats()
    local h = { label = label(name, req), tq = core.task.now() }
    local queued = st.live + st.waiting >= st.limit
    live = live + 1
    local task = (req.task or ""):gsub("\n", " "):sub(1, 80)
    if tty then order[#order + 1] = h; redraw(); tick()
    else line(h, (queued and "queued: " or "started: ") .. task) h.said_queued = queued end
    return h
  end
  function B.running(h)
    if h.t0 then return end
    h.t0 = core.task.now()
    if tty then redraw()
    elseif h.said_queued then
      line(h, ("started after %.1fs in the queue"):format(h.t0 - h.tq))
    end
  end
  function B.progress(h, text)
    h.last = text
    if tty then redraw(verbose and ("[%s] %s"):format(h.label, text) or nil)
    else line(h, verbose and text or text:sub(1, 200)) end
  end
  function B.finish(h, r)
    h.done, h.t1 = true, core.task.now()
    h.t0 = h.t0 or h.tq -- it ended before it got a slot
    h.ok = r and r.success
    live = live - 1
    if not h.ok then h.last = r and (r.error or ""):match("^[^\n]*") or "stopped" end
    if tty then redraw()
    else
      line(h, ("%s in %.1fs%s"):format(h.ok and "done" or "failed",
        h.t1 - h.t0, h.ok and "" or (": " .. (h.last or ""))))
    end
  end
  function B.close()
    if ticker then ticker:cancel() end
  end
  return B
end

--- The script's own frame closest to where an error was raised: its
--- "path:line", or nil. The embedded modules a call went through are
--- not the user's concern.
local function user_frame(path)
  local src = "@" .. path
  for level = 3, 200 do
    local info = debug.getinfo(level, "Sl")
    if not info then return nil end
    if info.source == src and info.currentline and info.currentline > 0 then
      return path .. ":" .. info.currentline
    end
  end
  return nil
end

function M.main(argv)
  -- Our options may come before or after the script (a nightly job reads
  -- naturally as `run review.lua --json`); after a `--` everything goes
  -- to the script as it is.
  local as_json, limit, verbose = false, nil, false
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
    elseif a == "--verbose" or a == "-v" then
      verbose = true
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
    io.stderr:write("Usage: agent-dispatch run [--json] [--verbose] [--timeout SECONDS] SCRIPT.lua [ARGS...]\n")
    return 2
  end
  local src, msg = core.fs.read_file(path)
  if not src then
    io.stderr:write("Error: cannot read script ", path, ": ", msg, "\n")
    return 1
  end
  -- As lua runs a file: a UTF-8 byte order mark is skipped, and so is a
  -- first line starting with # (a #! line: the script is executable), its
  -- newline kept so that line numbers stay those of the file.
  if src:sub(1, 3) == "\239\187\191" then src = src:sub(4) end
  if src:sub(1, 1) == "#" then src = src:gsub("^[^\n]*", "", 1) end
  local chunk, lerr = load(src, "@" .. path, "t")
  if not chunk then
    io.stderr:write("Error: ", lerr, "\n")
    return 1
  end
  local api = require "agent_dispatch"
  api.args = rest
  local board
  if os.getenv("AGENT_DISPATCH_QUIET") == nil then
    board = reporter(core.sys.isatty(2), verbose)
    require("ad.domain.runner").observer = board
  end
  if as_json then
    -- stdout carries the one JSON value: what the script prints goes to
    -- stderr instead.
    _G.print = function(...)
      local parts = {}
      for k = 1, select("#", ...) do parts[k] = tostring((select(k, ...))) end
      io.stderr:write(table.concat(parts, "\t"), "\n")
    end
  end
  -- Hook scripts apply to scripts too (their custom tools are unused here).
  require("ad.domain.plugins").load(function() end, {})
  _G.arg = { [0] = path, table.unpack(rest) }
  -- The script is one delegation tree: its dispatches hang under its span.
  local trace = require "ad.domain.trace"
  local tctx = trace.root(nil, nil)
  -- Its start is written once a span under it is: a script that
  -- dispatches nothing (the shell completions' names.lua) records no tree.
  local run_span = trace.record(tctx, { kind = "run",
    task = table.concat({ path, table.unpack(rest) }, " ") })
  trace.process = trace.under(tctx, run_span)
  trace.deferred = run_span
  -- os.exit from the script ends the run the way its end does (children
  -- and their groups stopped, the run's span ended), with that status: the
  -- C exit it replaces would leave both behind.
  local requested_exit, main
  os.exit = function(code)
    if code == true or code == nil then code = 0 elseif code == false then code = 1 end
    requested_exit = math.tointeger(tonumber(code)) or 1
    if main and core.task.current() ~= main then main:cancel() end
    error(require("ad.infra.errors").new("cancelled", "os.exit"), 0)
  end
  main = core.task.spawn(function()
    -- A script that never yields would keep the --timeout timer from
    -- running: it may not run longer than that without yielding.
    if limit then core.task.set_budget(limit) end
    return xpcall(chunk, function(e)
      if type(e) == "table" and e.type == "cancelled" then return e end
      local msg = type(e) == "table" and e.message and tostring(e.message) or tostring(e)
      -- A table raised as the error: what it holds (as JSON when it can be).
      if type(e) == "table" and not e.message then
        local shown, text = pcall(json.encode, e)
        if shown then msg = text end
      end
      -- The user's file:line leads; the traceback (through embedded
      -- modules too) only with --verbose.
      local where = user_frame(path)
      if where and msg:sub(1, #path + 1) ~= path .. ":" then msg = where .. ": " .. msg end
      return { script_error = msg, traceback = debug.traceback("", 2) }
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
  if limit and not timed_out and not pcall_ok and type(value) == "table" and
      type(value.script_error) == "string" and value.script_error:find("without yielding", 1, true) then
    timed_out = true
    io.stderr:write("agent-dispatch: the script ran longer than ", tostring(limit),
      " s (--timeout) without yielding; stopped it\n")
  end
  local stopped = timed_out or not ok or (not pcall_ok and type(value) == "table" and
    value.type == "cancelled")
  if requested_exit then stopped = false end
  if trace.deferred == run_span then
    trace.deferred = nil
  else
    trace.finish(run_span, stopped and "cancelled" or
      ((requested_exit == 0 or (pcall_ok and value ~= false)) and "ok" or "error"))
  end
  if board then board.close() end
  local sig_done = watcher:done()
  watcher:cancel()
  if timer then timer:cancel() end
  -- Background jobs the script left running are stopped, not orphaned.
  if package.loaded["ad.domain.async"] then package.loaded["ad.domain.async"].shutdown() end
  if requested_exit then return requested_exit end
  if timed_out then return 124 end
  if not ok and not sig_done and type(pcall_ok) == "string" and
      pcall_ok:find("coroutine.yield() was called directly", 1, true) then
    -- (the script's own mistake, not an interruption)
    io.stderr:write("Error: ", path, ": ", pcall_ok, "\n")
    return 1
  end
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
    if type(value) == "table" and type(value.script_error) == "string" and
        value.script_error:find(": stopped by SIG", 1, true) then
      -- (a signal the loop could not deliver: the script never yielded)
      io.stderr:write("agent-dispatch: interrupted: ", value.script_error, "\n")
      return 130
    end
    if type(value) == "table" and value.script_error then
      io.stderr:write("Error: ", value.script_error, "\n")
      if verbose then io.stderr:write(value.traceback:gsub("^\n", ""), "\n") end
    else
      io.stderr:write("Error: ", tostring(value), "\n")
    end
    return 1
  end
  if sig_done then return 130 end
  if as_json then
    local ok, text = pcall(json.encode, value == nil and json.null or value)
    if not ok then
      io.stderr:write("Error: the script's value is not JSON (", tostring(text), "): a table ",
        "that contains itself, or nests deeper than JSON output allows\n")
      return 1
    end
    io.stdout:write(text, "\n")
  end
  if value == false then return 1 end
  if math.type(value) == "integer" then
    if value >= 0 and value <= 255 then return value end
    -- (the status would be taken modulo 256: 256 would read as success)
    io.stderr:write("agent-dispatch: the script returned ", value, "; an exit status is 0 to 255, ",
      "so the run exits 1\n")
    return 1
  end
  return 0
end

return M
