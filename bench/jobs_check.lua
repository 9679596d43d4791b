-- jobs_check.lua - checks a job store written by bench/jobs_gen against the
-- product's own code. Run by the product itself:
--
--   AGENT_DISPATCH_JOBS_DIR=DIR agent-dispatch run bench/jobs_check.lua
--
-- 1. Every record decodes through jobs.get() and, re-encoded the way
--    jobs.lua writes a record (keys in jobs.KEYS order, result in
--    runner.RESULT_KEYS order), gives back the file byte for byte.
-- 2. jobs.rebuild_index() (the index the product derives from the records)
--    is byte for byte the generated .index (the generator uses created_at
--    values that %.14g prints exactly; the product's own records round to
--    1e-4 s, so on a product-written store the rebuilt index may differ).
-- 3. jobs.list() returns the newest jobs of the index, newest first.
-- Prints "ok N records" or raises an error.
local core = require "ad.core"
local json = require "ad.infra.json"
local util = require "ad.infra.util"
local jobs = require "ad.storage.jobs"
local runner = require "ad.domain.runner"

local dir = jobs.dir()
local function slurp(p)
  local f = assert(io.open(p, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

local entries = assert(core.jobs.index_scan(dir, nil))
for _, e in ipairs(entries) do
  local text = assert(core.jobs.read(dir, e.id))
  local rec = assert(jobs.get(e.id), "jobs.get refused " .. e.id)
  local out = json.object(util.copy(rec), jobs.KEYS)
  if out.result then out.result = runner.result(util.copy(out.result)) end
  local again = json.encode(out)
  if again ~= text then
    error("record " .. e.id .. " differs from the product's encoding:\n  file:    " ..
      text .. "\n  product: " .. again)
  end
  if rec.status ~= e.status or math.abs(rec.created_at - e.created_at) > 1e-3 then
    error("index entry of " .. e.id .. " disagrees with its record")
  end
end

local index = slurp(dir .. "/.index")
local n = jobs.rebuild_index()
local rebuilt = slurp(dir .. "/.index")
if n ~= #entries or rebuilt ~= index then
  error("the product's rebuilt index differs from the generated one")
end

local list = jobs.list(nil, 3)
for i = 1, math.min(3, #entries) do
  if not list[i] or list[i].id ~= entries[i].id then
    error("jobs.list() does not return the newest jobs first")
  end
end
print("ok " .. #entries .. " records")
