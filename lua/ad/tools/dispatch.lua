--- Dispatch tools: dispatch, dispatch_session, dispatch_parallel,
--- dispatch_stream, dispatch_dialogue. Thin wrappers over ad.domain.dispatch.
local json = require "ad.infra.json"
local util = require "ad.infra.util"
local tools = require "ad.tools"
local limits = require "ad.infra.limits"
local D = util.lazy "ad.domain.dispatch"
local request = util.lazy "ad.domain.request"

local DISPATCH_ANN = json.object({ readOnlyHint = false, destructiveHint = true,
  idempotentHint = false, openWorldHint = true },
  { "readOnlyHint", "destructiveHint", "idempotentHint", "openWorldHint" })

local P = {
  agent = { name = "agent", type = "string", required = true,
            description = "Agent name (see list_agents)." },
  task = { name = "task", type = "string", required = true,
           description = "What the agent should do, self-contained." },
  context = { name = "context", type = "string", default = "",
              description = "Background the agent needs (errors, findings, constraints)." },
  caller = { name = "caller", type = "string", default = "",
             description = "Who is asking (your project or agent name)." },
  goal = { name = "goal", type = "string", default = "",
           description = "The larger goal this task serves." },
  response_format = { name = "response_format", type = "string", default = "",
                      description = "\"json\" to ask for one JSON value (parsed into parsed_result)." },
  response_schema = { name = "response_schema", type = "schema",
                      description = "A JSON Schema (object or JSON text) the answer must match: " ..
                        "the result carries it as structured_output; a run that ends without " ..
                        "one fails with error_type \"schema\"." },
  timeout_seconds = { name = "timeout_seconds", type = "integer", default = 0,
                      description = "One-off timeout in seconds (" .. limits.timeout_range() ..
                        "); 0 = the agent's configured timeout." },
  group = { name = "group", type = "string", default = "",
            description = "Dispatch as a member of this group: its shared context is added." },
  handoff_after_seconds = { name = "handoff_after_seconds", type = "integer",
    minimum = 0, maximum = limits.MAX_HANDOFF,
    description = "Seconds after which a call still running returns {status: \"running\", " ..
      "job_id, progress, hint} and goes on as a job (dispatch_wait gets its answer); " ..
      "0 = never; default: settings.handoff_after_seconds (100)." },
  session_id = { name = "session_id", type = "string", default = "",
                 description = "Session to resume (from an earlier result); empty = new session." },
  tree_budget_usd = { name = "tree_budget_usd", type = "number", minimum = 0,
    description = "Spend cap in USD for this delegation and everything below it " ..
      "(parallel items, nested dispatches); unset = settings.tree_budget_usd." },
}

local function envelope_or(r, err)
  if not r then return tools.envelope(err) end
  return r
end

-- The sync dispatch tools hand a call still running at its deadline off
-- to a job (ad.domain.dispatch).
local HANDOFF = { handoff = true }
-- dispatch and dispatch_session pass their validated arguments as they
-- are (ad.domain.dispatch.one reads them, copies nothing); what they add
-- comes with these.
local DISPATCH = { handoff = true, checked = true, use_cache = true }
local SESSION = { handoff = true, checked = true, span_kind = "session" }

local function hooks(ctx)
  return { log = ctx.log, progress = ctx.progress_n, answer = ctx.answer, elicit = ctx.elicit }
end

tools.define{
  name = "dispatch",
  title = "Delegate a task to an agent",
  description = "Delegate a task to a Claude Code agent that lives in another " ..
    "project directory (its own CLAUDE.md, MCP servers, tools, files) and " ..
    "return its answer. Use it when the task needs that project's context. " ..
    "Pass caller= and goal= so the agent knows who asks and why. Returns " ..
    "{agent, success, result, session_id, cost_usd, ...}; on failure error " ..
    "and error_type (permission, timeout, budget, not_found, recursion, " ..
    "cli_error, schema). A timed-out run can be continued with dispatch_session and " ..
    "the returned session_id. Identical successful requests are cached.",
  params = { P.agent, P.task, P.context, P.caller, P.goal, P.response_format,
             P.response_schema,
             { name = "return_ref", type = "boolean", default = false,
               description = "Store the full result and return a compact ref (fetch_result reads it)." },
             { name = "summary_chars", type = "integer", default = limits.SUMMARY_CHARS, minimum = 0, maximum = 100000,
               description = "With return_ref: characters of the result to include as a summary." },
             P.timeout_seconds, P.group, P.handoff_after_seconds, P.tree_budget_usd },
  annotations = DISPATCH_ANN,
  guard = "config",
  handler = function(a, ctx)
    -- (ctx has the hooks one() reads: log, elicit, answer)
    return envelope_or(D.one(ctx.cfg, a, ctx, DISPATCH))
  end,
}

tools.define{
  name = "dispatch_session",
  title = "Continue a conversation with an agent",
  description = "Multi-turn work with one agent: omit session_id to start a " ..
    "new session, or pass the session_id of an earlier result to continue " ..
    "it (for example task='Continue where you left off' after a timeout). " ..
    "Never cached.",
  params = { P.agent, P.task, P.session_id, P.context, P.caller, P.goal,
             P.response_format, P.response_schema, P.timeout_seconds,
             P.handoff_after_seconds, P.tree_budget_usd },
  annotations = DISPATCH_ANN,
  guard = "config",
  handler = function(a, ctx)
    return envelope_or(D.one(ctx.cfg, a, ctx, SESSION))
  end,
}

tools.define{
  name = "dispatch_parallel",
  title = "Fan a task out to several agents",
  description = "Run several dispatches at once and return their results in " ..
    "input order; with aggregate=<agent>, that agent also synthesizes them " ..
    "into one answer ({individual_results, aggregated}). dispatches is a " ..
    "JSON array (as a string) of objects with agent and task, and optional " ..
    "context, caller, goal, response_format, response_schema, timeout_seconds, " ..
    "group. Every " ..
    "item is validated before anything runs; one failed item never affects " ..
    "the others.",
  params = {
    { name = "dispatches", type = "string", required = true,
      description = "JSON array of {agent, task, ...} objects, encoded as a string." },
    { name = "aggregate", type = "string", default = "",
      description = "Agent that merges the results into one answer (optional)." },
    P.handoff_after_seconds, P.tree_budget_usd,
  },
  annotations = DISPATCH_ANN,
  guard = "config",
  handler = function(a, ctx)
    local list, err = json.decode(a.dispatches)
    if err then return tools.envelope("Invalid JSON in dispatches: " .. err) end
    local items, verr = D.parallel_items(ctx.cfg, list, a.aggregate)
    if not items then return tools.envelope(verr) end
    local tree_budget, berr = request.tree_budget(a.tree_budget_usd)
    if berr then return tools.envelope(berr) end
    local h = hooks(ctx)
    h.tree_budget_usd = tree_budget
    local after, herr = request.handoff_after(a.handoff_after_seconds, ctx.cfg.settings)
    if herr then return tools.envelope(herr) end
    if after then return D.parallel_handoff(ctx.cfg, items, a.aggregate, h, after) end
    return D.parallel(ctx.cfg, items, a.aggregate, h)
  end,
}

tools.define{
  name = "dispatch_stream",
  title = "Delegate with live progress",
  description = "Like dispatch, but the agent's progress (its messages and " ..
    "the tools it uses) is reported live while it works, as MCP progress " ..
    "and log notifications. Use it for long tasks you want to watch. " ..
    "Never cached.",
  params = { P.agent, P.task, P.context, P.caller, P.goal, P.response_format,
             P.timeout_seconds, P.handoff_after_seconds, P.tree_budget_usd },
  annotations = DISPATCH_ANN,
  guard = "config",
  handler = function(a, ctx)
    local p = util.copy(a)
    p.stream = true
    p.on_progress = function(line)
      local short = util.cut(line, 300)
      ctx.log("info", "[" .. a.agent .. "] " .. short)
      ctx.progress(a.agent .. ": " .. short)
    end
    return envelope_or(D.one(ctx.cfg, p, hooks(ctx), HANDOFF))
  end,
}

tools.define{
  name = "dispatch_dialogue",
  title = "Let two agents talk a problem through",
  description = "A dialogue between two agents: the responder (the expert) " ..
    "answers the requester (who has the problem), and they alternate, each " ..
    "continuing its own session, until one ends a reply with [RESOLVED] or " ..
    "max_rounds (1-10) is reached. Returns resolved, rounds, total cost and " ..
    "duration, final_answer and the conversation.",
  params = {
    { name = "requester", type = "string", required = true, description = "Agent with the problem." },
    { name = "responder", type = "string", required = true, description = "Agent with the expertise." },
    { name = "topic", type = "string", required = true, description = "The problem to solve." },
    { name = "max_rounds", type = "integer", default = 3, minimum = 1, maximum = 10,
      description = "Rounds of responder + requester turns (1-10)." },
    P.tree_budget_usd,
  },
  annotations = DISPATCH_ANN,
  guard = "config",
  handler = function(a, ctx)
    return envelope_or(D.dialogue(ctx.cfg, a, hooks(ctx)))
  end,
}
