--- A sign of life while a CLI command waits for its agent. On a terminal
--- (stderr): one line redrawn in place, a spinner, the elapsed seconds and
--- the last progress line, cleared when the wait ends. Piped: each progress
--- line as it comes ("  -> line"), and stdout line-buffered so a reader of
--- the pipe sees every line when it is written.
local core = require "ad.core"

local M = {}

M.FRAMES = { "|", "/", "-", "\\" }
M.TICK = 0.25

--- Starts the display; returns {progress = function(line), stop = function()}.
--- opts.tty (default: stderr is a terminal), opts.lines (piped: print the
--- progress lines; default true).
function M.start(opts)
  opts = opts or {}
  local tty = opts.tty
  if tty == nil then tty = core.sys.isatty(2) end
  io.stdout:setvbuf("line")
  local last, t0, frame = nil, core.task.now(), 0
  local function draw()
    frame = frame % #M.FRAMES + 1
    local text = (last or "waiting for the agent"):gsub("%s+", " ")
    io.stderr:write(("\r\27[2K%s %3ds  %s"):format(M.FRAMES[frame],
      math.floor(core.task.now() - t0), text:sub(1, 70)))
    io.stderr:flush()
  end
  local ticker
  if tty then
    draw()
    ticker = core.task.spawn(function()
      while core.task.sleep(M.TICK) do draw() end
    end)
  end
  return {
    progress = function(line)
      last = line
      if tty then draw()
      elseif opts.lines ~= false then io.stderr:write("  -> ", line, "\n") end
    end,
    stop = function()
      if ticker then
        ticker:cancel()
        ticker = nil
        io.stderr:write("\r\27[2K")
        io.stderr:flush()
      end
    end,
  }
end

return M
