-- The YAML loader and dumper: any text either loads or is refused with a
-- message; what loads dumps, and the dump loads back to the same value.
local core = require "ad.core"

local function same(a, b, path)
  if type(a) ~= type(b) then
    error(path .. ": " .. type(a) .. " became " .. type(b), 0)
  end
  if type(a) ~= "table" then
    if a ~= b and not (a ~= a and b ~= b) then
      error(path .. ": " .. tostring(a) .. " became " .. tostring(b), 0)
    end
    return
  end
  for k, v in pairs(a) do same(v, b[k], path .. "." .. tostring(k)) end
  for k in pairs(b) do
    if a[k] == nil then error(path .. ": key " .. tostring(k) .. " appeared", 0) end
  end
end

return function(data)
  local v, err = core.yaml.load(data)
  if v == nil then
    assert(err == nil or type(err) == "string", "a refusal without a message")
    return true
  end
  local text, derr = core.yaml.dump(v)
  if text == nil then
    -- Only what YAML cannot carry may be refused (e.g. nested too deep).
    assert(type(derr) == "string", "a dump refusal without a message")
    return true
  end
  local back, lerr = core.yaml.load(text)
  assert(back ~= nil or lerr == nil, "the dump does not load: " .. tostring(lerr) .. "\n" .. text)
  debug.sethook() -- the comparison is the harness's code: no line coverage
  same(v, back, "$")
  return true
end
