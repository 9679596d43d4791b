-- The JSON-RPC line reader and router (both protocol eras, batches): each
-- input is up to 32 lines fed to one Server. Asserts that every output
-- line is one valid JSON text, and that every request with a valid id gets
-- exactly one reply carrying that id (raw digits for numbers) — at most
-- one when the client cancelled it.
local core = require "ad.core"
local json = require "ad.infra.json"
local cjson = require "cjson"

local function decode(text)
  return (json.decode(text))
end

-- Output must be JSON that strict cjson reads, lone surrogate escapes
-- aside (an id is echoed as the client wrote it).
local function strict(text)
  local ok, v = pcall(cjson.decode, json.fix_surrogates(text) or text)
  return ok and v or nil
end
local mcp = require "ad.protocol.mcp"

local sink = { write = function(self) return self end, flush = function() return true end }
io.stderr = sink

local spawned = {}
local real_spawn = core.task.spawn
core.task.spawn = function(...)
  local t = real_spawn(...)
  spawned[#spawned + 1] = t
  return t
end

-- The id as a comparable key: strings by value, except that one with a
-- lone surrogate escape (decoded as U+FFFD) is keyed by its raw text;
-- integers by their raw digits.
local function id_key(line, msg)
  if type(msg.id) == "string" then
    local raw = core.json.raw_member(line, "id")
    if raw and raw:sub(1, 1) == '"' and json.fix_surrogates(raw) then return "r:" .. raw end
    return "s:" .. msg.id
  end
  if type(msg.id) == "number" then
    local raw = core.json.raw_member(line, "id")
    if raw and raw:match("^-?%d+$") and not raw:match("^-?0%d") then return "n:" .. raw end
  end
  return nil
end

-- The id key a reply must carry for this request line, or nil.
local function request_key(line, msg)
  if type(msg) ~= "table" or json.is_array(msg) or msg.id == nil then return nil end
  if msg.method == nil and (msg.result ~= nil or msg.error ~= nil) then return nil end
  return id_key(line, msg)
end

-- Checks one output line: exactly one line of JSON, an object or array.
-- Returns the id key of a reply, or false.
local function check_output(text)
  assert(text:find("\n", 1, true) == #text, "an output is not exactly one line: " .. text)
  local msg = strict(text)
  assert(msg ~= nil and type(msg) == "table", "an output line is not a JSON object or array: " .. text)
  if not json.is_array(msg) and msg.method == nil then
    return id_key(text, msg) or false
  end
  return false
end

-- Long outputs (the tools lists, tens of kB) repeat from input to input:
-- one checked before is known good, and decoding it again would cost more
-- than the rest of the session. The memo holds a bounded number of them.
local memo, memo_n = {}, 0
local function checked(text)
  if #text < 1024 then return check_output(text) end
  local key = memo[text]
  if key == nil then
    key = check_output(text)
    if memo_n >= 64 then memo, memo_n = {}, 0 end
    memo[text], memo_n = key, memo_n + 1
  end
  return key
end

-- What the lines ask for: the id key of every request (a count per key)
-- and the ids the client cancelled.
local function expected(lines)
  local want, cancelled = {}, {}
  for _, line in ipairs(lines) do
    if core.text.valid(line) then
      local msg = decode(line)
      local key = request_key(line, msg)
      if key then want[key] = (want[key] or 0) + 1 end
      if type(msg) == "table" and msg.method == "notifications/cancelled" and msg.id == nil
          and type(msg.params) == "table" then
        local r = msg.params.requestId
        if type(r) == "string" then cancelled["s:" .. r] = true end
        if math.type(r) == "integer" then cancelled["n:" .. r] = true end
        if type(r) == "number" then cancelled.any_number = true end
      end
    end
  end
  return want, cancelled
end

return function(data)
  spawned = {}
  local out, lines = {}, {}
  local server = mcp.new(function(text) out[#out + 1] = text; return true end)
  for line in (data .. "\n"):gmatch("([^\n]*)\n") do
    if #lines == 32 then break end
    lines[#lines + 1] = line
    server:line(line)
  end
  local i = 1
  while i <= #spawned do
    spawned[i]:wait()
    i = i + 1
  end
  server:shutdown(0)
  -- The checks are the harness's code, not the program's: no line
  -- coverage for them (the hook is this task's; the next input's task
  -- inherits it again from the main thread).
  debug.sethook()
  local want, cancelled = expected(lines)
  local got = {}
  for _, text in ipairs(out) do
    local key = checked(text)
    if key then got[key] = (got[key] or 0) + 1 end
  end
  for key, n in pairs(want) do
    local g = got[key] or 0
    if cancelled[key] or (key:sub(1, 2) == "n:" and cancelled.any_number) then
      assert(g <= n, "request " .. key .. " got " .. g .. " replies for " .. n)
    else
      assert(g == n, "request " .. key .. " got " .. g .. " replies for " .. n)
    end
  end
  for key, g in pairs(got) do
    assert(want[key], "a reply carries id " .. key .. " that no request had")
  end
  return true
end
