--- User extensions: custom tools and lifecycle hooks from hook scripts in
--- <config dir>/tools/*.lua ($AGENT_DISPATCH_TOOLS_DIR).
---
--- Each file runs once, in its own environment whose globals are the
--- registration API (reading an undefined global is an error, so typos
--- surface at load time):
---
---   tool{ name =, description =, params = {{name =, type =, required =,
---         default =, description =}...}, handler = function(args, ad) end,
---         override = false }
---   hook("before_dispatch", function(req) end)  -- may rewrite req.task /
---        req.context (return req) or refuse (return false, "why")
---   hook("after_result", function(req, result) end)  -- may annotate or
---        redact (return the new result, or nil to keep it)
---   hook("job_done", function(record) end)
---   hook("redact", function(text) end)  -- returns the text to keep; runs
---        on every progress line before anything sees or stores it, and
---        on the text fields of every result (after after_result)
---   hook("on_permission", function(req) end)  -- a relayed permission
---        request of a child ({tool, input, agent, request_id,
---        description}): return "allow", "deny" (and a message the
---        child's model sees) or "ask" (ad.domain.relay_policy)
---
--- plus ad (the agent_dispatch module), json, log, and Lua's safe
--- libraries. A file is loaded only when the file opened is owned by the
--- user and not writable by group or others, and so is every directory on
--- its resolved path (core.fs.read_trusted; as ssh does with keys). A
--- broken file is reported with file:line and skipped; loading and every
--- hook run under a time budget, and an error in one hook fails only the
--- request it ran for.
local core = require "ad.core"
local json = require "ad.infra.json"
local util = require "ad.infra.util"

local M = {}

M.LOAD_BUDGET = 2    -- seconds a tool file may run while loading
M.CALL_BUDGET = 10   -- seconds a handler or hook may run without yielding
-- AGENT_DISPATCH_TEST_CALL_BUDGET (a test-only switch, 1-10 s): a shorter
-- call budget, so the tests of runaway code do not each spin for 10 s.
do
  local b = tonumber(os.getenv("AGENT_DISPATCH_TEST_CALL_BUDGET") or "")
  if b and b >= 1 and b < M.CALL_BUDGET then M.CALL_BUDGET = b end
end

M.hooks = { before_dispatch = {}, after_result = {}, job_done = {}, redact = {},
  on_permission = {} }
M.loaded = {}        -- {file =, tools = {names}}
M.problems = {}      -- {file =, message =}
M.ran = false        -- has any tool file's code run (even one then skipped)?

M.dir = require("ad.storage.paths").tools_dir

--- nil when path may be loaded, else why not.
function M.unsafe(path)
  local kind, _, mode, uid = core.fs.stat(path)
  if not kind then return nil end
  if uid ~= core.sys.getuid() then
    return "refusing " .. path .. ": owned by uid " .. tostring(uid) ..
      ", not by you (uid " .. core.sys.getuid() .. ")"
  end
  if mode & 18 ~= 0 then -- 0022: group or others may write
    return string.format("refusing %s: it is writable by %s (mode %o); run: chmod go-w %s",
      path, (mode & 2 ~= 0) and "others" or "its group", mode, path)
  end
  return nil
end

local function problem(file, message)
  M.problems[#M.problems + 1] = { file = file, message = message }
  io.stderr:write("agent-dispatch: ", message, "\n")
end

local SAFE_GLOBALS = { "assert", "error", "ipairs", "next", "pairs", "pcall",
  "select", "tonumber", "tostring", "type", "xpcall", "setmetatable",
  "getmetatable", "rawequal", "rawget", "rawset", "rawlen", "string", "table",
  "math", "utf8", "require", "print" }

local function strict_env(api)
  local env = {}
  for _, k in ipairs(SAFE_GLOBALS) do env[k] = _G[k] end
  env.os = { time = os.time, date = os.date, clock = os.clock, getenv = os.getenv }
  env.print = function(...)
    local parts = {}
    for i = 1, select("#", ...) do parts[i] = tostring((select(i, ...))) end
    io.stderr:write(table.concat(parts, "\t"), "\n")
  end
  for k, v in pairs(api) do env[k] = v end
  return setmetatable(env, { __index = function(_, k)
    error("undefined global '" .. tostring(k) .. "'", 2)
  end })
end

local TYPES = { string = true, integer = true, number = true, boolean = true }

--- Turns a tool{} spec into a registry definition, or raises.
local function make_tool(spec, file, ad)
  if type(spec) ~= "table" then error("tool{} expects a table", 3) end
  if type(spec.name) ~= "string" or not spec.name:match("^[%w_.-]+$") or #spec.name > 64 then
    error("tool name must be 1-64 characters of letters, digits, '_', '-', '.'", 3)
  end
  if type(spec.handler) ~= "function" then error("tool '" .. spec.name .. "' needs a handler", 3) end
  local params = {}
  for i, p in ipairs(spec.params or {}) do
    if type(p) ~= "table" or type(p.name) ~= "string" or not TYPES[p.type] then
      error("tool '" .. spec.name .. "': params[" .. i .. "] needs a name and a type " ..
        "(string, integer, number or boolean)", 3)
    end
    params[i] = p
  end
  local handler = spec.handler
  return {
    name = spec.name, title = spec.title,
    description = spec.description or ("Custom tool from " .. file),
    params = params, custom = file, override = spec.override == true,
    guard = "config",
    handler = function(args, ctx)
      local api = setmetatable({
        log = function(...)
          local parts = {}
          for i = 1, select("#", ...) do parts[i] = tostring((select(i, ...))) end
          ctx.log("info", table.concat(parts, " "))
        end,
        progress = ctx.progress,
      }, { __index = ad })
      return handler(args, api)
    end,
  }
end

--- A message handler that makes sure a load error names path:line (the
--- time-budget error is raised from a VM hook and carries no position).
local function locate(path)
  return function(e)
    if type(e) == "table" then e = e.message end
    e = tostring(e)
    if e:sub(1, #path + 1) == path .. ":" then return e end
    for level = 2, 50 do
      local info = debug.getinfo(level, "Sl")
      if not info then break end
      if info.source == "@" .. path and (info.currentline or 0) > 0 then
        return path .. ":" .. info.currentline .. ": " .. e
      end
    end
    return path .. ": " .. e
  end
end

--- The agent_dispatch module for tool files. It requires the policy
--- modules, so a broken or refused override makes it fail to load: then
--- tool files still load, and only what uses `ad` fails, with the
--- override's error (file:line), each time until the file is fixed.
local function ad_api()
  local ok, mod = pcall(require, "agent_dispatch")
  if ok then return mod end
  io.stderr:write("agent-dispatch: the `ad` API of tool files is unavailable: ",
    tostring(mod), "\n")
  return setmetatable({}, { __index = function(_, k)
    local ok2, m = pcall(require, "agent_dispatch")
    if ok2 then return m[k] end
    error(m, 2)
  end })
end

--- Loads every tool file; define(def) registers a tool. Returns the number
--- of tools registered.
function M.load(define, builtin)
  local dir = M.dir()
  if not core.fs.stat(dir) then return 0 end
  local why = M.unsafe(dir)
  if why then problem(dir, why) return 0 end
  local names = core.fs.listdir(dir) or {}
  table.sort(names)
  local count = 0
  local ad
  local defined_in = {} -- custom tool name -> the file that defined it
  for _, name in ipairs(names) do
    if name:match("%.lua$") then
      local path = dir .. "/" .. name
      -- Checked on the descriptor that is read (and every directory on the
      -- file's resolved path), so a swap after a check cannot slip in.
      local src, rerr, rcode = core.fs.read_trusted(path, 4 * 1024 * 1024)
      if rcode == "untrusted" then
        problem(path, "refusing " .. path .. ": " .. rerr)
      else
        ad = ad or ad_api()
        local tools, hooks = {}, {}
        local api = {
          tool = function(spec) tools[#tools + 1] = make_tool(spec, path, ad) end,
          hook = function(event, fn)
            if not M.hooks[event] then
              error("unknown hook '" .. tostring(event) .. "' (before_dispatch, after_result, job_done, redact, on_permission)", 2)
            end
            if type(fn) ~= "function" then error("hook needs a function", 2) end
            hooks[#hooks + 1] = { event = event, fn = fn, file = path }
          end,
          ad = ad,
          json = { encode = json.encode, decode = json.decode, array = json.array, null = json.null },
          log = function(...)
            local parts = {}
            for i = 1, select("#", ...) do parts[i] = tostring((select(i, ...))) end
            io.stderr:write("[", name, "] ", table.concat(parts, " "), "\n")
          end,
        }
        local chunk, lerr
        if src then chunk, lerr = load(src, "@" .. path, "t", strict_env(api)) end
        if not chunk then
          problem(path, "cannot load " .. path .. ": " .. tostring(lerr or rerr))
        else
          M.ran = true
          local t = core.task.spawn(function()
            core.task.set_budget(M.LOAD_BUDGET)
            return xpcall(chunk, locate(path))
          end)
          local _, ok, err = t:wait()
          if not ok then
            problem(path, "error in " .. tostring(type(err) == "table" and err.message or err) ..
              " — file skipped")
          else
            local names_here = {}
            local refused = false
            local seen = {}
            for _, def in ipairs(tools) do
              if builtin[def.name] and not def.override then
                problem(path, path .. ": tool '" .. def.name .. "' is built in; set " ..
                  "override = true in its tool{} to replace it — file skipped")
                refused = true
              elseif defined_in[def.name] or seen[def.name] then
                -- (one name, one tool: which one would answer is no one's guess)
                problem(path, path .. ": tool '" .. def.name .. "' is defined " ..
                  (seen[def.name] and "twice in this file" or ("in " .. defined_in[def.name] ..
                  " already")) .. " — file skipped")
                refused = true
              end
              seen[def.name] = true
            end
            if not refused then
              for _, def in ipairs(tools) do
                define(def)
                defined_in[def.name] = name
                names_here[#names_here + 1] = def.name
                count = count + 1
              end
              for _, h in ipairs(hooks) do table.insert(M.hooks[h.event], h) end
              M.loaded[#M.loaded + 1] = { file = path, tools = names_here, hooks = #hooks }
            end
          end
        end
      end
    end
  end
  return count
end

--- True when any hook is registered.
function M.active()
  return #M.hooks.before_dispatch > 0 or #M.hooks.after_result > 0 or #M.hooks.redact > 0
end

local function where(h)
  return h.file:match("([^/]+)$")
end

-- The error of a failed hook as text. Lua's error for an allocation the
-- memory budget refused says only "not enough memory": name the budget.
local function why(res)
  if res == "not enough memory" then return core.task.memory_refused() or res end
  if type(res) == "table" and res.message == nil then
    -- error({code = 1}): its contents, not "table: 0x..."
    local ok, text = pcall(json.encode, res)
    if ok then return "error value " .. text end
  end
  return tostring(type(res) == "table" and res.message or res)
end

--- Runs the before_dispatch hooks on req (a table the hooks may change).
--- Returns true, or false and the refusal message.
function M.before_dispatch(req)
  local agent = req.agent
  for _, h in ipairs(M.hooks.before_dispatch) do
    local ok, res, msg = pcall(h.fn, req)
    if not ok and type(res) == "table" and res.type == "cancelled" then error(res, 0) end
    if not ok then
      return false, "before_dispatch hook in " .. where(h) .. " failed: " .. why(res)
    end
    if res == false then
      return false, "Refused by before_dispatch hook in " .. where(h) .. ": " ..
        tostring(msg or "no reason given")
    end
    if type(res) == "table" then
      for _, k in ipairs({ "task", "context", "caller", "goal" }) do
        if res[k] ~= nil then req[k] = res[k] end
      end
    end
    -- Where the call goes is the caller's choice: a hook that changed it
    -- would be ignored without a word (the request is built already).
    local to = type(res) == "table" and res.agent ~= nil and res.agent or req.agent
    if to ~= agent then
      return false, "before_dispatch hook in " .. where(h) .. " changed the agent (" ..
        tostring(agent) .. " -> " .. tostring(to) .. "): a hook may change task, context, " ..
        "caller and goal, not where the call goes; refuse the call (return false, why) " ..
        "and dispatch to the other agent instead"
    end
    -- What the hook left (returned, or set on req) is checked as a
    -- request's own fields are: nothing else would name the hook.
    local bad = M.view_error(req)
    if bad then
      return false, "before_dispatch hook in " .. where(h) .. " left a bad request: " .. bad
    end
  end
  return true
end

--- Why the view a before_dispatch hook left cannot be dispatched (task a
--- non-empty string; context, caller, goal strings or nil), or nil.
function M.view_error(view)
  if type(view.task) ~= "string" then
    return "task must be a string, got " .. type(view.task)
  elseif not view.task:find("%S") then
    return "task is empty"
  end
  for _, k in ipairs({ "context", "caller", "goal" }) do
    if view[k] ~= nil and type(view[k]) ~= "string" then
      return k .. " must be a string, got " .. type(view[k])
    end
  end
end

--- Runs the after_result hooks; returns the (possibly replaced) result.
--- A failing hook fails the request: the result becomes a failure without
--- the agent's text (a redacting hook that breaks must not leak what it
--- was meant to remove); session_id and cost are kept.
function M.after_result(req, result)
  for _, h in ipairs(M.hooks.after_result) do
    local before = result
    local ok, res = pcall(h.fn, req, result)
    if not ok and type(res) == "table" and res.type == "cancelled" then error(res, 0) end
    local msg
    if not ok then
      msg = "after_result hook in " .. where(h) .. " failed: " .. why(res)
    else
      if type(res) == "table" then result = require("ad.domain.result").new(res) end
      local bad = M.result_error(result)
      if bad then msg = "after_result hook in " .. where(h) .. " left a bad result: " .. bad end
    end
    if msg then
      io.stderr:write("agent-dispatch: ", msg, "\n")
      local r = type(result) == "table" and result or before
      local num = function(v) return type(v) == "number" and v or nil end
      return require("ad.domain.result").failure(
        type(before.agent) == "string" and before.agent or req.agent, "cli_error", msg,
        { session_id = type(r.session_id) == "string" and r.session_id or nil,
          cost_usd = num(r.cost_usd), duration_ms = num(r.duration_ms), num_turns = num(r.num_turns),
          hint = "The error is in the hook file " .. h.file ..
            "; the agent's answer was withheld because it was not post-processed." })
    end
  end
  return M.redact_result(req, result)
end

--- Why r (what an after_result hook left) is not a DispatchResult: agent
--- a string, success a boolean, result/error/error_type/hint/session_id
--- strings or nil, cost_usd/duration_ms/num_turns numbers or nil; or nil.
function M.result_error(r)
  if type(r) ~= "table" then return "a result must be a table, got " .. type(r) end
  if type(r.agent) ~= "string" then return "agent must be a string, got " .. type(r.agent) end
  if type(r.success) ~= "boolean" then
    return "success must be a boolean, got " .. type(r.success)
  end
  for _, k in ipairs({ "result", "error", "error_type", "hint", "session_id" }) do
    if r[k] ~= nil and r[k] ~= json.null and type(r[k]) ~= "string" then
      return k .. " must be a string, got " .. type(r[k])
    end
  end
  for _, k in ipairs({ "cost_usd", "duration_ms", "num_turns" }) do
    if r[k] ~= nil and r[k] ~= json.null and type(r[k]) ~= "number" then
      return k .. " must be a number, got " .. type(r[k])
    end
  end
end

--- Runs the redact hooks on text; returns the text, or nil and the error
--- of the hook that failed (the caller withholds the text then).
local function redact(text)
  for _, h in ipairs(M.hooks.redact) do
    local ok, res = pcall(h.fn, text)
    if not ok and type(res) == "table" and res.type == "cancelled" then error(res, 0) end
    if not ok or type(res) ~= "string" then
      local reason = not ok and why(res) or ("returned " .. type(res) .. ", not a string")
      return nil, "redact hook in " .. where(h) .. " failed: " .. reason
    end
    text = res
  end
  return text
end

--- The progress-line filter of the redact hooks, or nil when there are
--- none. A line a failing hook could not clean is replaced, never passed on.
function M.progress_filter()
  if #M.hooks.redact == 0 then return nil end
  return function(line)
    local out, err = redact(line)
    if out then return out end
    io.stderr:write("agent-dispatch: ", err, "\n")
    return "[progress line withheld: " .. err .. "]"
  end
end

--- A permission decision as it is recorded and returned (ad.domain.relay):
--- its message may quote the child's input, so the redact hooks clean it
--- into a copy; d itself is left as it is (the child is answered with it).
--- A message a failing hook could not clean is replaced, never passed on.
function M.redact_decision(d)
  if #M.hooks.redact == 0 or type(d.message) ~= "string" then return d end
  local out, err = redact(d.message)
  if not out then
    io.stderr:write("agent-dispatch: ", err, "\n")
    out = "[message withheld: " .. err .. "]"
  end
  local c = setmetatable(util.copy(d), getmetatable(d))
  c.message = out
  return c
end

-- Applies redact to every string in v (a parsed_result), keys included,
-- in place, however deep (a walk with a stack of its own, each table once:
-- a secret nested past any depth, or a table met twice, still goes
-- through the hooks exactly once).
local function redact_tree(v)
  if type(v) ~= "table" then return true end
  local stack, seen = { v }, { [v] = true }
  while #stack > 0 do
    local t = table.remove(stack)
    local renamed
    for k, x in pairs(t) do
      if type(x) == "string" then
        local out, err = redact(x)
        if not out then return nil, err end
        t[k] = out -- (assigning an existing key during pairs is allowed)
      elseif type(x) == "table" and not seen[x] then
        seen[x] = true
        stack[#stack + 1] = x
      end
      if type(k) == "string" then
        local out, err = redact(k)
        if not out then return nil, err end
        if out ~= k then
          renamed = renamed or {}
          renamed[#renamed + 1] = { k, out }
        end
      end
    end
    -- (new keys are not added during the traversal above)
    for _, kv in ipairs(renamed or {}) do
      local value = t[kv[1]]
      t[kv[1]] = nil
      t[kv[2]] = value
    end
  end
  return true
end

--- Runs the redact hooks on the text fields of a result (result, error,
--- hint, and every string of parsed_result and structured_output). A failing hook turns the
--- result into a failure without the agent's text, as after_result does.
function M.redact_result(req, result)
  if #M.hooks.redact == 0 then return result end
  local r = util.copy(result)
  local err
  for _, k in ipairs({ "result", "error", "hint" }) do
    if not err and type(r[k]) == "string" then r[k], err = redact(r[k]) end
  end
  for _, k in ipairs({ "parsed_result", "structured_output" }) do
    if not err and type(r[k]) == "table" then
      local _; _, err = redact_tree(r[k])
    elseif not err and type(r[k]) == "string" then
      r[k], err = redact(r[k])
    end
  end
  if not err then return r end
  io.stderr:write("agent-dispatch: ", err, "\n")
  return require("ad.domain.result").failure(result.agent or req.agent, "cli_error", err,
    { session_id = result.session_id, cost_usd = result.cost_usd,
      duration_ms = result.duration_ms, num_turns = result.num_turns,
      hint = "The error is in a redact hook; the agent's answer was withheld " ..
        "because it could not be redacted." })
end

function M.job_done(record)
  for _, h in ipairs(M.hooks.job_done) do
    local ok, err = pcall(h.fn, record)
    if not ok then
      io.stderr:write("agent-dispatch: job_done hook in ", where(h), " failed: ", why(err), "\n")
    end
  end
end

return M
