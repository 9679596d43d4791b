--- The trace tool: dispatch_trace, the delegation tree of a dispatch.
local json = require "ad.infra.json"
local util = require "ad.infra.util"
local tools = require "ad.tools"
local trace = util.lazy "ad.domain.trace"

tools.define{
  name = "dispatch_trace",
  title = "Show a delegation tree",
  description = "The trace of a delegation: every dispatch it made (parallel " ..
    "items, the aggregator, dialogue turns, async jobs, and dispatches made " ..
    "by agents themselves) as a tree, with agent, status, time and cost per " ..
    "node and in total. Give trace_id, or job_id (an async job's tree), or " ..
    "nothing (or last=true) for the most recent trace. Returns {trace_id, " ..
    "summary, text (the tree drawn), spans}.",
  params = {
    { name = "trace_id", type = "string", default = "", description = "A trace id (32 hex digits)." },
    { name = "job_id", type = "string", default = "", description = "An async job's id: its trace." },
    { name = "last", type = "boolean", default = false, description = "The most recent trace." },
  },
  annotations = json.object({ readOnlyHint = true, openWorldHint = false },
                            { "readOnlyHint", "openWorldHint" }),
  guard = "io",
  handler = function(a)
    local id = (a.trace_id ~= "" and a.trace_id) or (a.job_id ~= "" and a.job_id) or nil
    local t, err = trace.show(id, { width = 120 })
    if not t then return tools.envelope(err, "agent-dispatch traces lists the recent ones.") end
    return json.object({ trace_id = t.trace_id, summary = t.summary, text = t.text,
      spans = json.array(t.spans) }, { "trace_id", "summary", "text", "spans" })
  end,
}
