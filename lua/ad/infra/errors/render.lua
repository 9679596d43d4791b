--- The wording of the errors of the config file and the state directories,
--- one renderer per error class, shared by every surface (the CLI, doctor,
--- the MCP tools and tasks, scripts, the top-level I/O handler). Each
--- returns the message (one line, no trailing period), the detail when the
--- class has one, and the remedy; a surface only frames them ("Error: ",
--- a tool's name, an envelope).
local util = require "ad.infra.util"
local config = require "ad.storage.config"

local M = {}

M.LOAD_HINT = "Fix the YAML in agents.yaml or restore a backup (agents.yaml.bak.1 " ..
  "is the file before agent-dispatch last changed it); `agent-dispatch doctor` points at the broken section."
M.TRUST_HINT = "agents.yaml is read only when you own it and neither it nor a " ..
  "directory on its path is writable by anyone else; fix the owner or mode as the error says."
M.IO_HINT = "Check free space and permissions on the config and jobs " ..
  "directories (~/.config/agent-dispatch, or wherever AGENT_DISPATCH_CONFIG " ..
  "and AGENT_DISPATCH_JOBS_DIR point)."

local PROBLEM = {
  schema = "it has an invalid schema",
  yaml = "it is not valid YAML",
  utf8 = "it is not valid UTF-8 (re-save it as UTF-8)",
  io = "it could not be read",
}

--- A config load error {kind = "schema"|"yaml"|"utf8"|"io", path, detail,
--- untrusted}: message, detail, remedy.
function M.load(e)
  local what = PROBLEM[e.kind]
  return "config at " .. e.path .. " could not be loaded" .. (what and (": " .. what) or ""),
    e.detail, e.untrusted and M.TRUST_HINT or M.LOAD_HINT
end

--- The load error as one line: message and detail.
function M.load_line(e)
  local msg, detail = M.load(e)
  return msg .. ": " .. tostring(detail)
end

--- A config change error {kind = "render"|"lock"|"write", path, detail}
--- (write includes a read-only config): message, remedy. The lock message
--- is a sentence; the others end in their detail (which may end in a path
--- or a command, so no period is added). nil for any other
--- kind: that is a load error (a change loads the file first).
function M.save(e)
  if e.kind == "render" then
    return "could not serialize the config to YAML: " .. tostring(e.detail),
      "Nothing changed: the previous config is intact. This is a bug in agent-dispatch; please report it."
  elseif e.kind == "lock" and e.detail ~= "timeout" then
    return config.lock_message(e) .. ".",
      "Nothing changed: the previous config is intact. Check free space and permissions on " ..
      util.dirname(e.path) .. "."
  elseif e.kind == "lock" then
    return config.lock_message(e) .. ".",
      "Nothing changed. Try again; if it persists, look for a stuck agent-dispatch process."
  elseif e.kind == "write" then
    return "could not write " .. e.path .. ": " .. tostring(e.detail),
      "Nothing changed: the previous config is intact (the write is atomic). " ..
      "Check free space and permissions on " .. util.dirname(e.path) .. "."
  end
  return nil
end

--- An I/O error raised as errors.new("io", message) by the jobs and state
--- code: message, remedy.
function M.io(e)
  return tostring(type(e) == "table" and e.message or e), M.IO_HINT
end

return M
