--- The `test` command of the CLI: one real dispatch to an agent, its answer
--- (or its error with a diagnosis) printed. Returns {test = command}.
local core = require "ad.core"
local common = require "ad.cli.common"
local progress = require "ad.cli.progress"

local out, err = common.out, common.err

local C = {}

C.test = {
  usage = "NAME [TASK] [--stream] [--timeout N]",
  summary = "Run one real dispatch to an agent and show the answer.",
  options = { { "--stream", help = "Show progress lines while the agent works." },
              { "--timeout", arg = "N", type = "int", help = "One-off timeout in seconds." } },
  positionals = { "NAME", "TASK" }, min = 1, max = 2,
  run = function(o, pos)
    local name = pos[1]
    if pos[2] and not pos[2]:find("%S") then
      err("Usage: ", common.PROG, " test ", C.test.usage)
      err("Error: Invalid value for 'TASK': it is empty (say what the agent should do, or leave it out).")
      return 2
    end
    local bad = common.timeout_check(o.timeout)
    if bad then return bad end
    local cfg, a, code = common.load_agent(name)
    if not cfg then return code end
    local t = pos[2] or "What project is this? Describe in one sentence."
    require("ad.storage.jobs").share_limit(cfg.settings.max_concurrency)
    out("Dispatching to '", name, "' (", a.host and (a.host .. ":") or "", a.directory, ")...")
    out("Task: ", t)
    out("---")
    -- A sign of life while it waits: on a terminal a spinner with the
    -- last progress line (so the child streams), piped the progress lines
    -- with --stream.
    -- The tool files' hooks (redact, before_dispatch, ...) apply as they
    -- do to every other dispatch (their custom tools are unused here).
    require("ad.domain.plugins").load(function() end, {})
    local tty = core.sys.isatty(2)
    local stream = o.stream or tty
    local shown = progress.start({ tty = tty, lines = o.stream })
    -- --timeout is this command's own one-off value, taken as given.
    local req, msg = require("ad.domain.request").build(cfg, { agent = name, task = t,
      timeout = o.timeout, stream = stream, on_progress = stream and shown.progress or nil })
    if not req then
      shown.stop()
      err("Error: ", msg)
      return 1
    end
    local ok, r = pcall(require("ad.domain.runner").dispatch, req)
    shown.stop()
    if not ok then error(r, 0) end
    if r.success then
      out(r.result)
      if r.hint then out("") out("Note: ", r.hint) end
      if r.cost_usd then
        out("")
        out(string.format("--- Cost: $%.4f | Turns: %s", r.cost_usd, tostring(r.num_turns or "?")))
      end
      return 0
    end
    return common.report_failure("test", name, r, o.timeout or a.timeout)
  end,
}

return C
