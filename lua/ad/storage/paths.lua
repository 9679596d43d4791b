--- Where the config file, its directory and the tool files are, and the
--- check of a private directory: a leaf module (environment, read through
--- util.getenv, and ad.infra.util only; the check loads what it needs
--- when called), so that deciding whether anything of the user's applies
--- does not load the config parser.
local util = require "ad.infra.util"
local getenv = util.getenv

local M = {}

function M.config_dir()
  local p = os.getenv("AGENT_DISPATCH_CONFIG")
  if p and p ~= "" then return util.dirname(util.expanduser(p) or p) end
  return (os.getenv("HOME") or "") .. "/.config/agent-dispatch"
end

-- The last answer of config_path and the variables it was made from:
-- every tool call that reads the config asks (the same text again is not
-- made again).
local memo_path, memo_var, memo_home

function M.config_path()
  local p = getenv("AGENT_DISPATCH_CONFIG")
  local home = getenv("HOME")
  if memo_path and p == memo_var and home == memo_home then return memo_path end
  local path
  if p and p ~= "" then
    path = util.expanduser(p) or p
  else
    path = (home or "") .. "/.config/agent-dispatch/agents.yaml"
  end
  -- (~user is looked up in /etc/passwd: not kept)
  if not (p and p:find("^~[^/]")) then
    memo_path, memo_var, memo_home = path, p, home
  end
  return path
end

--- The directory of tool files: $AGENT_DISPATCH_TOOLS_DIR, else tools/
--- next to the config file.
function M.tools_dir()
  local d = os.getenv("AGENT_DISPATCH_TOOLS_DIR")
  if d and d ~= "" then return util.expanduser(d) or d end
  return M.config_dir() .. "/tools"
end

--- The private directory `what` ("jobs", "traces"): $var, else `what`
--- next to the config file; checked by private_dir (which raises).
function M.state_dir(what, var)
  local d = os.getenv(var)
  if d and d ~= "" then return M.private_dir(util.expanduser(d) or d, what, var) end
  return M.private_dir(M.config_dir() .. "/" .. what, what, var)
end

--- A directory whose files are acted on as real (job records, spans and
--- budget ledgers): what is the directory `what` ("jobs", "traces") at d,
--- named by the environment variable var. Returns d when it is missing
--- (the caller creates it 0700) or is the user's own, not writable by
--- group or others, in directories no one else may write (sticky ones
--- excepted), and not a symbolic link (its files are opened without
--- following links, and so is the directory that holds them: whoever can
--- replace the link chooses which files are acted on). Otherwise raises
--- the "io" error saying why and how to fix it.
function M.private_dir(d, what, var)
  local core = require "ad.core"
  local function refuse(why)
    error(require("ad.infra.errors").new("io", "refusing the " .. what .. " directory " ..
      d .. ": " .. why), 0)
  end
  local kind, _, mode, uid = core.fs.stat(d)
  if not kind then return d end
  local parent, base = d:gsub("/+$", ""):match("^(.*)/([^/]+)$")
  local real, rparent = core.fs.realpath(d), parent and core.fs.realpath(parent ~= "" and parent or "/")
  if real and rparent and real ~= (rparent == "/" and "" or rparent) .. "/" .. base then
    refuse("it is a symbolic link (to " .. real .. "); set " .. var .. " to the directory itself")
  end
  local me = core.sys.getuid()
  if uid ~= me then
    refuse("it is owned by uid " .. uid .. ", not by you (uid " .. me .. ")")
  elseif mode & 18 ~= 0 then -- 0022
    refuse(string.format("it is writable by group or others (mode %o); run: chmod go-w %s", mode, d))
  end
  -- Nor may anyone else rename it, or put another directory in its place,
  -- through a directory above it (as for agents.yaml).
  local trusted, why = core.fs.dirs_trusted(real or d)
  if not trusted then refuse(why) end
  return d
end

return M
