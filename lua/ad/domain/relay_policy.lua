--- The permission relay's policy: an agent's `permissions` settings and
--- how one `can_use_tool` request of its child is decided before anyone
--- is asked. Overridable like every policy module.
---
--- Settings (agents.<name>.permissions in agents.yaml):
---   relay: true|false       relay the child's permission requests (default
---                           false: the child runs as before, its tool uses
---                           decided by its own permission mode and lists)
---   allow: [patterns]       allowed without asking
---   deny:  [patterns]       denied without asking (checked first)
---   timeout_seconds: N      an unanswered request is denied after N s
---                           (default 120, 1-86400)
---
--- Order: deny rules, then allow rules, then the on_permission hooks of
--- tool files (the first "allow" or "deny" decides; "ask" or nothing goes
--- on; a hook that fails denies), then the caller is asked.
---
--- Patterns (as Claude Code writes permission rules):
---   Tool              every use of the tool named Tool ("Bash", "Read",
---                     "mcp__server__tool"); "*" in a name matches any run
---                     of characters, so "mcp__github__*" is every tool of
---                     one server, and "mcp__github" alone means the same.
---   Tool(spec)        uses of Tool whose subject matches spec: for Bash the
---                     command, for Read, Edit, Write, MultiEdit,
---                     NotebookEdit, Glob, Grep and LS the path
---                     (file_path, notebook_path or path), for WebFetch the
---                     URL ("domain:example.com" matches that host and its
---                     subdomains), for any other tool any top-level string
---                     of its input. In spec, "*" matches any run of
---                     characters (also "/"), and a spec ending in ":*"
---                     matches what starts with the text before it followed
---                     by nothing or a space ("Bash(git status:*)" matches
---                     "git status" and "git status -s", not "git statusx").
---   A Bash command with shell control characters (; & | ` $( > < or a
---   newline) is never matched by an allow rule (it could chain any other
---   command after an allowed prefix); a deny rule matches it when it
---   matches the whole command or any part between those characters.
local util = require "ad.infra.util"

local M = {}

M.DEFAULT_TIMEOUT = 120
M.MAX_TIMEOUT = 86400
M.DECISIONS = { allow = true, deny = true, ask = true }

local PATH_TOOLS = { Read = true, Edit = true, Write = true, MultiEdit = true,
  NotebookEdit = true, Glob = true, Grep = true, LS = true }
local PATH_KEYS = { "file_path", "notebook_path", "path" }

--- Compiles a glob ("*" = any run of characters) to an anchored Lua pattern.
local function glob(s)
  local parts = {}
  for i = 1, #s do
    local c = s:sub(i, i)
    if c == "*" then
      parts[#parts + 1] = ".*"
    elseif c:match("%W") then
      parts[#parts + 1] = "%" .. c
    else
      parts[#parts + 1] = c
    end
  end
  return "^" .. table.concat(parts) .. "$"
end

--- Parses a pattern: {tool = lua pattern, spec = raw spec or nil}, or nil
--- and what is wrong with it.
function M.parse(p)
  if type(p) ~= "string" then return nil, "expected a string" end
  local s = util.strip(p)
  if s == "" then return nil, "empty pattern" end
  local name, spec = s:match("^([^()]+)%((.*)%)$")
  if not name then
    if s:find("[()]") then
      return nil, "unbalanced parentheses in " .. util.repr(p) ..
        " (write Tool or Tool(spec), e.g. Bash(git status:*))"
    end
    name = s
  end
  name = util.strip(name)
  if not name:match("^[%w_%-%*%.]+$") then
    return nil, "invalid tool name " .. util.repr(name) ..
      " (letters, digits, '_', '-', '.' and '*')"
  end
  if spec and util.strip(spec) == "" then
    return nil, "empty spec in " .. util.repr(p) .. " (write " .. name .. " to match every use)"
  end
  -- "mcp__server" alone: every tool of that server.
  if not spec and name:match("^mcp__[^_].-$") and not name:find("__", 6, true) then
    name = name .. "__*"
  end
  return { tool = glob(name), spec = spec, text = s }
end

--- nil when p is a valid pattern, else the problem (config validation).
function M.problem(p)
  local _, err = M.parse(p)
  return err
end

local SHELL_CONTROL = "[;&|`<>\n]"

local function has_control(cmd)
  return cmd:find(SHELL_CONTROL) ~= nil or cmd:find("$(", 1, true) ~= nil
end

-- Does text match spec ("*" globs; a trailing ":*" is a word prefix)?
local function spec_match(spec, text)
  if type(text) ~= "string" then return false end
  text = util.strip(text)
  local prefix = spec:match("^(.*):%*$")
  if prefix then
    local pat = glob(prefix):sub(1, -2) -- unanchored at the end
    local s, e = text:find(pat)
    if not s then return false end
    return e == #text or text:sub(e + 1, e + 1):match("%s") ~= nil
  end
  return text:match(glob(spec)) ~= nil
end

local function host_of(url)
  if type(url) ~= "string" then return nil end
  local h = url:match("^%a[%w+.-]*://([^/?#]+)")
  if not h then return nil end
  h = h:gsub("^.*@", ""):gsub(":%d+$", "")
  return h:lower()
end

-- The parts of a Bash command between shell control characters.
local function segments(cmd)
  local out = {}
  for part in (cmd:gsub("%$%(", ";"):gsub(SHELL_CONTROL, ";") .. ";"):gmatch("([^;]*);") do
    part = util.strip(part)
    if part ~= "" then out[#out + 1] = part end
  end
  return out
end

--- Does pattern pat (parsed) match request req ({tool=, input=})? kind:
--- "allow" or "deny" (they differ for Bash commands with control
--- characters).
function M.matches(pat, req, kind)
  if type(req.tool) ~= "string" or not req.tool:match(pat.tool) then return false end
  if not pat.spec then return true end
  local input = type(req.input) == "table" and req.input or {}
  local spec = pat.spec
  if req.tool == "Bash" then
    local cmd = input.command
    if type(cmd) ~= "string" then return false end
    if has_control(cmd) then
      if kind ~= "deny" then return false end
      if spec_match(spec, cmd) then return true end
      for _, part in ipairs(segments(cmd)) do
        if spec_match(spec, part) then return true end
      end
      return false
    end
    return spec_match(spec, cmd)
  elseif PATH_TOOLS[req.tool] then
    for _, k in ipairs(PATH_KEYS) do
      if spec_match(spec, input[k]) then return true end
    end
    return false
  elseif req.tool == "WebFetch" then
    local domain = spec:match("^domain:(.+)$")
    if domain then
      local h = host_of(input.url)
      domain = domain:lower()
      return h ~= nil and (h == domain or h:sub(-(#domain + 1)) == "." .. domain)
    end
    return spec_match(spec, input.url)
  end
  for _, v in pairs(input) do
    if spec_match(spec, v) then return true end
  end
  return false
end

--- The first pattern of list that matches req, or nil.
function M.first_match(list, req, kind)
  for _, p in ipairs(list or {}) do
    local pat = M.parse(p)
    if pat and M.matches(pat, req, kind) then return pat.text end
  end
  return nil
end

--- An agent's relay settings with the defaults filled in, or nil when the
--- relay is off for it.
function M.settings(agent)
  local p = agent and agent.permissions
  if type(p) ~= "table" or p.relay ~= true then return nil end
  return { allow = p.allow or {}, deny = p.deny or {},
    timeout = p.timeout_seconds or M.DEFAULT_TIMEOUT }
end

--- Decides req ({tool=, input=, agent=, request_id=, description=})
--- without the caller: returns decision ("allow" | "deny" | "ask"), by
--- ("rule" | "hook"), and the detail (the rule, or the hook's message).
--- hooks: a list of {fn=, file=} (ad.domain.plugins on_permission).
function M.decide(settings, req, hooks)
  local rule = M.first_match(settings.deny, req, "deny")
  if rule then return "deny", "rule", rule end
  rule = M.first_match(settings.allow, req, "allow")
  if rule then return "allow", "rule", rule end
  for _, h in ipairs(hooks or {}) do
    local view = { tool = req.tool, input = util.copy(req.input or {}), agent = req.agent,
      request_id = req.request_id, description = req.description }
    local ok, res, msg = pcall(h.fn, view)
    if not ok and type(res) == "table" and res.type == "cancelled" then error(res, 0) end
    local file = h.file and h.file:match("([^/]+)$") or "?"
    if not ok then
      return "deny", "hook", "on_permission hook in " .. file .. " failed: " ..
        tostring(type(res) == "table" and res.message or res)
    end
    if res == "allow" or res == "deny" then
      return res, "hook", msg ~= nil and tostring(msg) or ("on_permission hook in " .. file)
    elseif res ~= nil and res ~= "ask" then
      return "deny", "hook", "on_permission hook in " .. file .. " returned " ..
        util.repr(tostring(res)) .. ", not \"allow\", \"deny\" or \"ask\""
    end
  end
  return "ask"
end

return M
