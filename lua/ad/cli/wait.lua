--- CLI `wait JOB... [--any|--all] [--timeout N] [--json]`: waits for
--- background jobs (ids or unique prefixes) the way dispatch_wait does
--- (woken by a change of the job's file, never a sleep-and-poll loop),
--- prints each job as it ends, and exits with the jobs' outcome: 0 every
--- job waited for succeeded, 1 one failed or was cancelled (or could not
--- be found), 124 the timeout passed first. A job whose runner died with
--- its child is settled as failed on the spot, as a starting server
--- would; the runner's exit wakes the wait too (a pidfd). Returns {name = command}; see ad.cli for the shape.
local core = require "ad.core"
local json = require "ad.infra.json"
local common = require "ad.cli.common"

local out, err = common.out, common.err

local C = {}

local TIMED_OUT = 124 -- as `run --timeout` and timeout(1)

local function succeeded(rec)
  return rec.status == "done" and type(rec.result) == "table" and rec.result.success == true
end

-- Waits for one job until it ends or the deadline (nil: none) passes;
-- returns its last record. The wait of dispatch_wait (ad.domain.async):
-- woken by a change of its record, or by the exit of the process that
-- runs it (a runner killed with SIGKILL writes nothing: the job is then
-- settled here).
local function wait_one(id, deadline)
  local async = require "ad.domain.async"
  while true do
    local left = deadline and deadline - core.task.now() or 3600
    local rec, timed_out = async.wait(id, math.max(0, math.min(left, 3600)))
    if not (rec and timed_out) or core.task.cancelled() or
        (deadline and core.task.now() >= deadline) then
      return rec
    end
  end
end

local function show(rec)
  local res = type(rec.result) == "table" and rec.result or nil
  out(rec.id, " [", rec.status, "] ", tostring(rec.agent),
      res and not res.success and (" (the agent failed" ..
        (res.error_type and (": " .. tostring(res.error_type)) or "") .. ")") or "")
  if res and res.success then
    out(tostring(res.result or ""))
  else
    local e = rec.error or (res and (res.error or res.result))
    if e then out("error: ", tostring(e)) end
  end
end

C.wait = {
  usage = "JOB... [--any | --all] [--timeout N] [--json]",
  summary = "Wait for jobs to end and print their results (exit 0: all succeeded, 1: one failed, 124: timeout).",
  options = {
    { "--any", help = "Return as soon as one of the jobs ends; the exit status is that job's outcome." },
    { "--all", help = "Wait for every job (the default)." },
    { "--timeout", arg = "N", type = "float", help = "Give up after N seconds (exit 124); default: wait as long as it takes." },
    common.JSON_OPT,
  },
  positionals = { "JOB" }, min = 1, max = "rest",
  run = function(o, pos)
    if o.any and o.all then
      err("Error: --any and --all exclude each other.")
      return 2
    end
    if o.timeout and o.timeout < 0 then
      err("Error: --timeout must be >= 0 (got ", tostring(o.timeout), ").")
      return 2
    end
    local ids, seen = {}, {}
    for _, arg in ipairs(pos) do
      local id, code = common.resolve_job_id(arg)
      if not id then return code end
      if not require("ad.storage.jobs").get(id) then
        err("Job not found: ", id)
        return 1
      end
      if not seen[id] then seen[id], ids[#ids + 1] = true, id end
    end
    local deadline = o.timeout and core.task.now() + o.timeout
    local ended, first = {}, nil
    local any_ended = core.task.event()
    local tasks = {}
    for i, id in ipairs(ids) do
      tasks[i] = core.task.spawn(function()
        local rec = wait_one(id, deadline)
        if rec and require("ad.storage.jobs").TERMINAL[rec.status] then
          ended[id] = rec
          if not o.json and (not o.any or not first) then show(rec) end
          first = first or id
          any_ended:set(true)
        end
        return rec
      end)
    end
    if o.any then
      any_ended:wait(deadline and math.max(0, deadline - core.task.now()) or nil)
      for _, t in ipairs(tasks) do t:cancel() end
    end
    local recs = json.array()
    for i, id in ipairs(ids) do
      local _, rec = tasks[i]:wait()
      recs[#recs + 1] = ended[id] or (type(rec) == "table" and rec) or require("ad.storage.jobs").get(id)
    end
    if o.json then common.json_out(recs) end
    local code
    if o.any then
      code = not first and TIMED_OUT or (succeeded(ended[first]) and 0 or 1)
    else
      code = 0
      for _, id in ipairs(ids) do
        if not ended[id] then code = TIMED_OUT break end
        if not succeeded(ended[id]) then code = 1 end
      end
    end
    -- (cancelled: a signal stopped the wait; the guard says so and exits
    -- 128 + its number)
    if code == TIMED_OUT and not core.task.cancelled() then
      local left = {}
      for _, id in ipairs(ids) do if not ended[id] then left[#left + 1] = id end end
      err("Timed out after ", tostring(o.timeout), "s; still running: ", table.concat(left, " "))
    end
    return code
  end,
}

return C
