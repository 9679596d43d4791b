-- 2026 task ids (ad.protocol.mcp_tasks_ext): bearer tokens of at least 128
-- random bits, "<job id>.<32 hex digits>", distinct, resolving to their
-- job only with the right token. Needs its own jobs directory
-- (AGENT_DISPATCH_JOBS_DIR): it creates 1,000 job records.
-- Run: agent-dispatch run tests/lua/task_ids_test.lua
local here = arg[0]:match("(.*/)") or "./"
local tap = dofile(here .. "tap.lua")
local test, eq, ok = tap.test, tap.eq, tap.ok
local jobs = require "ad.storage.jobs"
local X = require "ad.protocol.mcp_tasks_ext"

local N = 1000

test("1,000 task ids are distinct, each a job id and 128 random bits", function()
  local seen, tokens, bad = {}, {}, 0
  for i = 1, N do
    local rec = jobs.create({ agent = "a", task = "t" .. i })
    local tid = X.task_id(rec.id)
    local job, token = tostring(tid):match("^(%x+)%.(%x+)$")
    if not (#tid == 65 and job == rec.id and tid:match("^[0-9a-f]+%.[0-9a-f]+$")
        and #token == 32) then
      bad = bad + 1
    end
    ok(not seen[tid], "task id " .. i .. " is new")
    seen[tid] = true
    tokens[#tokens + 1] = token
    eq(X.task_id(rec.id), tid, "the same job keeps its task id")
  end
  eq(bad, 0, "every id is <32 hex job id>.<32 hex token>, 65 characters")
  -- No digit of the token is fixed (a UUID's version and variant digits
  -- would be): every position takes many values over 1,000 tokens, so
  -- all 128 bits vary.
  local fixed = {}
  for pos = 1, 32 do
    local vals, n = {}, 0
    for _, t in ipairs(tokens) do
      local c = t:sub(pos, pos)
      if not vals[c] then vals[c], n = true, n + 1 end
    end
    if n < 16 then fixed[#fixed + 1] = pos .. ":" .. n end
  end
  eq(table.concat(fixed, " "), "", "every token digit takes all 16 values")
end)

test("a task id resolves to its job only with its own token", function()
  local rec = jobs.create({ agent = "a", task = "resolve" })
  local tid = X.task_id(rec.id)
  local got = X.resolve(tid)
  eq(got and got.id, rec.id, "the right token")
  local token = tid:sub(34)
  local wrong = rec.id .. "." .. (token:sub(1, 31) .. (token:sub(32) == "0" and "1" or "0"))
  eq(X.resolve(wrong), nil, "a wrong token")
  eq(X.resolve(rec.id), nil, "the bare job id")
  eq(X.resolve(rec.id .. "."), nil, "an empty token")
  eq(X.resolve(rec.id .. "." .. token .. "0"), nil, "a longer token")
  local other = jobs.create({ agent = "a", task = "other" })
  X.task_id(other.id)
  eq(X.resolve(other.id .. "." .. token), nil, "another job's id with this token")
  -- The token is private: the record every reader sees has none.
  eq(jobs.get(rec.id).task_token, nil, "jobs.get leaves the token out")
  eq(jobs.list(nil, 5)[1].task_token, nil, "a listing leaves it out")
end)
