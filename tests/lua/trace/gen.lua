-- A deterministic random trace of n span records (shuffled, as a store
-- may hold them): nested up to ~10 levels, every status, costs, some
-- running spans, and agent names that need escaping and truncation.
-- Returns the records and the `now` to draw running spans up to.
local STATUSES = { "ok", "ok", "ok", "ok", "error", "cancelled", "refused", "running" }
local NAMES = { "security", "db", "frontend", "api-tests", "docs", "lead",
  "<script>&amp;\"quoted\" 'x'</script>", "日本語のとても長いエージェント名です",
  "red\27[31m\7bell", "émoji-🚀-agent-with-a-very-long-name-indeed", "bad\xff\xfe-utf8" }

return function(n, seed)
  local x = seed
  local function rnd(m)
    x = (x * 1103515245 + 12345) % 2147483648
    return (x >> 12) % m
  end
  local t0, spans = 1764513000, {}
  for i = 1, n do
    -- A parent among the last few spans (deep chains) or any earlier one.
    local parent
    if i > 1 then
      parent = spans[i - 1 - (rnd(3) == 0 and rnd(math.min(i - 1, 3)) or rnd(i - 1))]
    end
    local start = parent and parent.start + rnd(800) / 100 or t0
    local status = i == 1 and "ok" or STATUSES[1 + rnd(#STATUSES)]
    local s = {
      trace_id = "0123456789abcdef0123456789abcdef",
      span_id = string.format("%016x", 0xa000 + i * 7919),
      parent_id = parent and parent.span_id or nil,
      kind = parent and "dispatch" or "parallel",
      agent = NAMES[1 + i % #NAMES], task = "task " .. i .. " <&>",
      start = start, status = status, cost_usd = rnd(2000) / 10000,
      num_turns = rnd(12), denied_tools = {}, cached = rnd(10) == 0, depth = 0,
    }
    if status ~= "running" then
      s["end"] = start + 0.5 + rnd(4000) / 100
      s.duration_ms = math.floor((s["end"] - start) * 1000 + 0.5)
    end
    spans[i] = s
  end
  local order = {}
  for i = 1, n do order[i] = spans[i] end
  for i = n, 2, -1 do
    local j = 1 + rnd(i)
    order[i], order[j] = order[j], order[i]
  end
  return order, t0 + 60
end
