-- The config loader, schema check, save and in-place editor: the input is
-- an agents.yaml. A file the loader accepts must survive a save unchanged
-- in meaning (dump, load, check: the same document), and an edit of it
-- (one agent's description) must either read back as the change or be
-- refused with a reason. A file refused is refused with a message, never
-- a Lua error.
local core = require "ad.core"
local config = require "ad.storage.config"
local config_edit = require "ad.storage.config_edit"

local PATH = "/nonexistent/agents.yaml"

local function check(doc)
  local ok, cfg = pcall(config.from_document, doc, PATH)
  if ok then return cfg end
  assert(type(cfg) == "table" and type(cfg.message) == "string",
    "a refusal that is not a schema error: " .. tostring(cfg))
  return nil
end

return function(data)
  local doc = core.yaml.load(data)
  if doc == nil then return true end
  local cfg = check(doc)
  if not cfg then return true end
  local want = config.to_document(cfg)
  local text, derr = core.yaml.dump(want)
  assert(text, "an accepted config does not save: " .. tostring(derr))
  local back = check(core.yaml.load(text))
  assert(back, "a saved config does not load back:\n" .. text)
  assert(config_edit.equal(config.to_document(back), want),
    "a saved config loads back with another meaning:\n" .. text)
  local name = cfg.agent_names[1]
  if name then
    cfg.agents[name].description = "edited: a \"quoted\" # text"
    local new_doc = config.to_document(cfg)
    local edited = config_edit.apply(data, want, new_doc)
    if edited then
      local again = check(core.yaml.load(edited))
      -- The editor may give up (the caller then rewrites the file in
      -- full), but what it hands back must at least be a valid config.
      assert(again, "the edited file is not a valid config:\n" .. edited)
    end
  end
  return true
end
