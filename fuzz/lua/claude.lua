-- The claude output interpreter: input lines as the CLI's stdout (first
-- byte picks stream-json or json mode, exit code and response format).
-- Lines are repaired to UTF-8 as the runner does. Asserts that interpret always returns a result with a boolean success,
-- the agent's name, and string fields that are valid UTF-8 and encode.
local core = require "ad.core"
local json = require "ad.infra.json"
local claude = require "ad.domain.claude"

return function(data)
  local mode = data:byte(1) or 0
  data = data:sub(2)
  local stream = mode & 1 == 1
  local run = { info = { exit_code = (mode >> 1) & 3, signal = (mode & 8 == 8) and 9 or 0,
                         timed_out = mode & 16 == 16, stderr = "" },
                session_id = "fresh-uuid", fresh = true, timeout = 300,
                budget = (mode & 32 == 32) and 0.01 or nil,
                max_output = 8 * 1024 * 1024, lines = {}, progress = {},
                truncated = mode & 64 == 64 }
  for line in data:gmatch("[^\n]+") do
    line = core.text.fix(line) -- as the runner hands lines over
    if stream then
      local kind, obj, progress = claude.event(line)
      if kind == "result" then run.payload = obj end
      for _, p in ipairs(progress or {}) do
        assert(type(p) == "string", "a progress line is not a string")
        run.progress[#run.progress + 1] = p
      end
    else
      run.lines[#run.lines + 1] = line
      run.last = line
    end
  end
  local r = claude.interpret(run, { agent_name = "a", stream = stream,
    response_format = (mode & 128 == 128) and "json" or nil })
  debug.sethook() -- the checks are the harness's code: no line coverage
  assert(type(r) == "table", "no result")
  assert(type(r.success) == "boolean", "success is not a boolean")
  assert(r.agent == "a", "the result names another agent")
  for k, v in pairs(r) do
    if type(v) == "string" then
      assert(core.text.valid(v), "field " .. k .. " is not valid UTF-8")
    end
  end
  assert(json.encode(r), "the result does not encode")
  -- The shaped decode (parsed_result, structured_output) reads what the
  -- plain one reads, the same but for [] where the plain one has {}.
  local plain = json.decode(data)
  local shaped = json.decode_shaped(data)
  assert((plain == nil) == (shaped == nil), "the shaped decode disagrees on the text")
  local function same(x, y, depth)
    if type(x) ~= type(y) then return false end
    if type(x) ~= "table" or depth > 1100 then return type(x) == "table" or x == y end
    for k, v in pairs(x) do
      if not same(v, y[k], depth + 1) then return false end
    end
    for k in pairs(y) do
      if x[k] == nil then return false end
    end
    return true
  end
  assert(same(plain, shaped, 0), "the shaped decode changed more than []")
  return true
end
