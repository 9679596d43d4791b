--- The `dispatch` command of the CLI: one dispatch to an agent from the
--- shell, as the dispatch tool does it (same request, same hooks), its
--- answer on stdout. Returns {dispatch = command}.
local core = require "ad.core"
local common = require "ad.cli.common"
local json = require "ad.infra.json"
local progress = require "ad.cli.progress"
local request = require "ad.domain.request"

local out, err, PROG = common.out, common.err, common.PROG

local C = {}

-- The failure on stderr: the message, then the hint when there is one;
-- a timeout with the advice in the CLI's terms (--timeout, not the
-- tools' timeout_seconds), as `test` gives it.
local function report_failure(r, name, seconds)
  if r.error_type == "timeout" and seconds then
    return common.report_failure("dispatch", name, r, seconds)
  end
  common.report_error(r)
  if r.hint then err("Hint: ", r.hint) end
end

-- --json-schema FILE|JSON: JSON text as given (it starts with "{"), or
-- the contents of a file. Returns the text, or nil after reporting.
-- (A file is read up to the bound a schema has: /dev/zero is refused,
-- not read until memory runs out.)
local function schema_arg(v)
  if v == nil or v:match("^%s*{") then return v end
  local f, msg = io.open(v, "rb")
  local text
  if f then
    text, msg = f:read(request.MAX_SCHEMA_BYTES + 1)
    f:close()
    text = text or (msg == nil and "" or nil)
  end
  if not text then
    err("Error: --json-schema: cannot read ", v, ": ", tostring(msg))
    return nil
  end
  if #text > request.MAX_SCHEMA_BYTES then
    err("Error: --json-schema: ", v, " is larger than ", request.MAX_SCHEMA_BYTES,
      " bytes, the most a schema may be.")
    return nil
  end
  return text
end

-- dispatch --async: the job as dispatch_async starts it. The job runs in
-- a detached job runner, so it outlives this command, whatever
-- settings.jobs_outlive_server says (in this process it would die at exit).
local function start_async(cfg, name, task, o)
  local req, msg = require("ad.domain.request").build(cfg, { agent = name, task = task,
    context = o.context, timeout = o.timeout, response_schema = o.json_schema })
  if not req then
    err("Error: ", msg)
    return 1
  end
  local rec = require("ad.domain.async").submit(req, nil, { detached = true })
  if o.json then
    out(json.encode(json.object({ job_id = rec.id, status = rec.status, agent = name },
      { "job_id", "status", "agent" })))
  else
    out(rec.id)
  end
  return 0
end

C.dispatch = {
  usage = "AGENT TASK [--json] [--context TEXT] [--timeout N] [--json-schema FILE|JSON] [--async]",
  summary = "Send a task to an agent and print its answer.",
  options = {
    { "--json", help = "Print the whole result (a DispatchResult) as JSON on stdout." },
    { "--context", arg = "TEXT", help = "Background the agent gets with the task." },
    { "--timeout", arg = "N", type = "int", help = "One-off timeout in seconds." },
    { "--json-schema", arg = "FILE|JSON", help = "A JSON Schema (a file, or JSON text starting with '{') the answer must match; the answer is printed as JSON (structured_output). A run that ends without one fails (error_type schema)." },
    { "--async", help = "Start the dispatch as a background job and print its id (with --json: {job_id, status, agent}); the job keeps running after this command exits. See 'jobs', 'job', 'cancel'." },
  },
  positionals = { "AGENT", "TASK" }, min = 2, max = 2,
  run = function(o, pos)
    local name, task = pos[1], pos[2]
    if not task:find("%S") then
      err("Usage: ", PROG, " dispatch ", C.dispatch.usage)
      err("Error: Invalid value for 'TASK': it is empty (say what the agent should do).")
      return 2
    end
    local bad = common.timeout_check(o.timeout)
    if bad then return bad end
    if o.json_schema then
      o.json_schema = schema_arg(o.json_schema)
      if not o.json_schema then return 1 end
    end
    local cfg, _, code = common.load_agent(name)
    if not cfg then return code end
    require("ad.storage.jobs").share_limit(cfg.settings.max_concurrency)
    if o.async then return start_async(cfg, name, task, o) end
    require("ad.domain.plugins").load(function() end, {})
    local shown = progress.start()
    local req, msg = require("ad.domain.request").build(cfg, { agent = name, task = task,
      context = o.context, timeout = o.timeout, response_schema = o.json_schema,
      stream = true, on_progress = shown.progress })
    if not req then
      shown.stop()
      err("Error: ", msg)
      return 1
    end
    local ok, r = pcall(require("ad.domain.runner").dispatch, req)
    shown.stop()
    if not ok then error(r, 0) end
    if o.json then
      out(json.encode(r))
    elseif r.success and r.structured_output ~= nil then
      out(json.encode(r.structured_output))
    elseif r.success then
      out(r.result or "")
    end
    if not r.success then report_failure(r, name, request.effective(req).timeout) end
    return r.success and 0 or 1
  end,
}

return C
