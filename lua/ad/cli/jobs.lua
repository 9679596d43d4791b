--- The background job commands of the CLI: jobs (list), job (show one),
--- cancel and gc. Returns {name = command}; see ad.cli for the shape.
local core = require "ad.core"
local util = require "ad.infra.util"
local json = require "ad.infra.json"
local common = require "ad.cli.common"

local out, err = common.out, common.err

local C = {}

local function age(t)
  local d = math.max(0, core.task.time() - (tonumber(t) or core.task.time()))
  if d < 60 then return math.floor(d) .. "s" end
  if d < 3600 then return math.floor(d / 60) .. "m" end
  if d < 86400 then return math.floor(d / 3600) .. "h" end
  return math.floor(d / 86400) .. "d"
end

local resolve_id = common.resolve_job_id

-- The record of the job arg names and its full id, or nil and the exit
-- status after reporting why not.
local function job_or_exit(arg)
  local id, code = resolve_id(arg)
  if not id then return nil, code end
  local rec = require("ad.storage.jobs").get_current(id)
  if not rec then err("Job not found: ", id) return nil, 1 end
  return rec, id
end

local JSON_OPT = common.JSON_OPT

-- The fields of a job in `jobs --json` (`job --json` prints the record).
local LIST_KEYS = { "id", "status", "agent", "task", "created_at", "started_at", "completed_at" }

C.jobs = {
  usage = "[--status S] [--limit N] [--json]", summary = "List background jobs, newest first.",
  options = { { "--status", arg = "S", choices = { "pending", "running", "done", "failed", "cancelled" },
                help = "Only jobs in this state: pending, running, done, failed or cancelled." },
              { "--limit", arg = "N", type = "int", help = "How many (default 20)." },
              JSON_OPT },
  run = function(o)
    if o.limit ~= nil and o.limit < 1 then
      err("Error: --limit must be at least 1 (got ", o.limit, ").")
      return 2
    end
    local list = require("ad.storage.jobs").list(o.status, o.limit or 20)
    if o.json then
      local l = json.array()
      for _, r in ipairs(list) do
        local e = json.object({}, LIST_KEYS)
        for _, k in ipairs(LIST_KEYS) do e[k] = r[k] end
        l[#l + 1] = e
      end
      return common.json_out(l)
    end
    if #list == 0 then
      out(o.status and ("No " .. o.status .. " jobs found.") or "No jobs found.")
      return 0
    end
    -- (the agent column padded by hand: a format's width stops at 99)
    local agent_w = 5
    for _, r in ipairs(list) do agent_w = math.max(agent_w, #tostring(r.agent)) end
    local function row(id, status, agent, when, task)
      return string.format("%-32s  %-9s  ", id, status) .. agent ..
        string.rep(" ", agent_w - #agent) .. string.format("  %4s  %s", when, task)
    end
    out((row("ID", "STATUS", "AGENT", "AGE", "TASK"):gsub("%s+$", "")))
    for _, r in ipairs(list) do
      out(row(r.id, r.status, tostring(r.agent), age(r.created_at),
          (util.cut(r.task or "", 60):gsub("\n", " "))))
    end
    return 0
  end,
}

-- The result part of `job`.
local function show_result(res)
  out("  success:   ", res.success and "true" or "false")
  if res.cost_usd then out(string.format("  cost_usd:  $%.4f", res.cost_usd)) end
  if res.budget_exceeded then out("  budget:    EXCEEDED") end
  local text = res.result or ""
  out("  result:")
  for line in (util.cut(text, 2000) .. "\n"):gmatch("(.-)\n") do out("    ", line) end
  if util.ulen(text) > 2000 then out("  … truncated (", util.ulen(text), " chars total)") end
end

C.job = {
  usage = "ID [--json]", summary = "Show one job with its progress and result (ID: the id or a unique prefix).",
  options = { JSON_OPT },
  positionals = { "ID" }, min = 1, max = 1,
  run = function(o, pos)
    local r, code = job_or_exit(pos[1])
    if not r then return code end
    if o.json then return common.json_out(r) end
    out(r.id, " [", r.status, "]")
    out("  agent:     ", tostring(r.agent))
    out("  task:      ", util.cut(r.task or "", 200))
    out("  created:   ", age(r.created_at), " ago")
    if r.started_at then out("  started:   ", age(r.started_at), " ago") end
    if r.completed_at then out("  completed: ", age(r.completed_at), " ago") end
    if r.error then out("  error:     ", util.cut(r.error, 300)) end
    if type(r.progress) == "table" and #r.progress > 0 then
      out("  progress:")
      for i = math.max(1, #r.progress - 9), #r.progress do out("    ", r.progress[i]) end
    end
    for _, line in ipairs(require("ad.domain.approve").lines(r)) do out(line) end
    if type(r.result) == "table" then show_result(r.result) end
    return 0
  end,
}

C.cancel = {
  usage = "ID", summary = "Cancel a job (pending, or running even if its server has exited).",
  positionals = { "ID" }, min = 1, max = 1,
  run = function(_, pos)
    local r, id = job_or_exit(pos[1])
    if not r then return id end
    local res = require("ad.domain.async").cancel(id)
    if res.outcome == "cancelled" then
      out("Cancelled: ", id)
    elseif res.outcome == "cancelled_running" then
      out("Cancelled: ", id, " (", res.message, ")")
    elseif res.outcome == "already_terminal" then
      out("Job already ", res.status, "; nothing to cancel.")
    elseif type(r.process) ~= "table" then
      err("Job ", id, " was not cancelled. ", res.message)
      return 1
    else
      err("Job ", id, " is running in a live agent-dispatch server and its subprocess " ..
          "could not be verified, so it was not touched. Use the dispatch_cancel MCP tool, or wait.")
      return 1
    end
    return 0
  end,
}

C.gc = {
  usage = "[--days N | --all]", summary = "Delete finished jobs and traces older than N days (default 7).",
  options = { { "--days", arg = "N", type = "float", help = "Age in days (default 7; fractions allowed)." },
              { "--all", help = "Every finished job, any age (traces: those not written in the last day)." } },
  run = function(o)
    local jobs = require "ad.storage.jobs"
    if o.all and o.days then
      err("Error: --days and --all exclude each other.")
      return 2
    end
    if o.all then
      out("Deleted ", jobs.gc(0), " terminal job(s) (all ages).")
      out("Deleted ", require("ad.storage.traces").prune(0), " trace(s) not written in the last day.")
      return 0
    end
    local days = o.days or 7
    if days <= 0 then
      err("Error: --days must be > 0 (got ", util.g(days), "). Use --all to purge every terminal job on purpose.")
      return 1
    end
    out("Deleted ", jobs.gc(days * 86400), " job(s) older than ", util.g(days), " day(s).")
    out("Deleted ", require("ad.storage.traces").prune(days * 86400), " trace(s) older than ",
      util.g(days), " day(s).")
    return 0
  end,
}

return C
