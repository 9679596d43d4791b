-- A custom MCP tool: ask two agents the same question at once and return
-- both answers side by side. Install:
--
--   mkdir -p ~/.config/agent-dispatch/tools
--   install -m 600 examples/tools/second_opinion.lua ~/.config/agent-dispatch/tools/
--
-- Claude Code then sees a `second_opinion` tool next to the built-in ones.
tool{
  name = "second_opinion",
  description = "Ask two agents the same question in parallel and compare " ..
    "their answers (for example the backend and the infra agent about a " ..
    "production incident).",
  params = {
    { name = "question", type = "string", required = true,
      description = "The question, self-contained." },
    { name = "first", type = "string", required = true, description = "First agent." },
    { name = "second", type = "string", required = true, description = "Second agent." },
  },
  handler = function(args, ad)
    ad.progress("asking " .. args.first .. " and " .. args.second)
    local results = ad.parallel{
      { agent = args.first, task = args.question, caller = "second_opinion" },
      { agent = args.second, task = args.question, caller = "second_opinion" },
    }
    local a, b = results[1], results[2]
    return {
      question = args.question,
      answers = {
        { agent = a.agent, success = a.success, answer = a.success and a.result or a.error },
        { agent = b.agent, success = b.success, answer = b.success and b.result or b.error },
      },
      cost_usd = (a.cost_usd or 0) + (b.cost_usd or 0),
    }
  end,
}

-- Every dispatch made through agent-dispatch says who asked, for the logs
-- of the agents that receive it.
hook("before_dispatch", function(req)
  req.caller = req.caller or "claude-code"
  return req
end)
