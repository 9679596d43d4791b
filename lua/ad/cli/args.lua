--- Command-line option parsing for the CLI commands.
--- spec = {usage =, summary =, options = {{"--long", "-s", arg = "NAME",
--- type = "int"|"float"|"string", multi = bool, choices = {...}}},
--- positionals = {"NAME", ...}, min = n, max = n (or "rest")}.
--- Returns opts (keyed by long name without dashes, '-' -> '_'), positional
--- list; or nil, message for a usage error (the CLI exits 2). Every value
--- must be UTF-8 text: what a command takes goes into agents.yaml, JSON
--- or a prompt, all UTF-8 (`run`, which hands its arguments to a script,
--- is not parsed here).
local core = require "ad.core"
local suggest = require "ad.infra.suggest"

local M = {}

local function key(long) return long:gsub("^%-%-", ""):gsub("%-", "_") end

function M.parse(spec, argv)
  local opts, pos = { _given = {} }, {}
  local by_name = {}
  for _, o in ipairs(spec.options or {}) do
    by_name[o[1]] = o
    if o[2] then by_name[o[2]] = o end
    if o.multi then opts[key(o[1])] = {} end
  end
  by_name["--help"] = { "--help", "-h" }
  by_name["-h"] = by_name["--help"]
  local i, only_pos = 1, false
  while i <= #argv do
    local a = argv[i]
    if only_pos or a == "-" or a:sub(1, 1) ~= "-" then
      pos[#pos + 1] = a
    elseif a == "--" then
      only_pos = true
    else
      local name, inline = a:match("^(%-%-[^=]+)=(.*)$")
      name = name or a
      local o = by_name[name]
      if not o then
        local names = { "--help" }
        for _, so in ipairs(spec.options or {}) do names[#names + 1] = so[1] end
        return nil, "No such option: " .. name .. "." .. suggest.hint(name, names, false)
      end
      local k = key(o[1])
      if o.arg then
        local v = inline
        if v == nil then
          i = i + 1
          v = argv[i]
          if v == nil then return nil, "Option " .. name .. " requires an argument." end
        end
        if not core.text.valid(v) then
          return nil, "Invalid value for " .. name .. ": it is not valid UTF-8 (" ..
            "what agent-dispatch stores and sends is UTF-8 text)."
        end
        if o.type == "int" then
          -- Decimal digits only: tonumber would take 0x10 as 16 and 1e2 as 100.
          local n = v:match("^%s*[+-]?%d+%s*$") and math.tointeger(tonumber(v))
          if not n then return nil, "Invalid value for " .. name .. ": '" .. v .. "' is not a valid integer." end
          v = n
        elseif o.type == "float" then
          local n = not v:find("^%s*[+-]?0[xX]") and tonumber(v)
          if not n then return nil, "Invalid value for " .. name .. ": '" .. v .. "' is not a valid number." end
          if n ~= n or n == math.huge or n == -math.huge then
            return nil, "Invalid value for " .. name .. ": '" .. v .. "' is not a finite number."
          end
          v = n + 0.0
        end
        if o.choices then
          local okc = false
          for _, c in ipairs(o.choices) do if c == v then okc = true end end
          if not okc then
            return nil, "Invalid value for " .. name .. ": '" .. tostring(v) ..
              "' is not one of " .. table.concat(o.choices, ", ") .. "."
          end
        end
        if o.multi then table.insert(opts[k], v) else opts[k] = v end
      else
        if inline ~= nil then return nil, "Option " .. name .. " does not take a value." end
        opts[k] = true
      end
      opts._given[k] = true
    end
    i = i + 1
  end
  if opts.help then return opts, pos end
  for n, p in ipairs(pos) do
    if not core.text.valid(p) then
      local what = spec.positionals and spec.positionals[math.min(n, #spec.positionals)] or "ARG"
      return nil, "Argument " .. what .. " is not valid UTF-8 (what agent-dispatch stores " ..
        "and sends is UTF-8 text" .. (what == "DIRECTORY" and
        "; give the directory a UTF-8 name, or a symbolic link with one" or "") .. ")."
    end
  end
  local min = spec.min or 0
  if #pos < min then
    return nil, "Missing argument '" .. (spec.positionals[#pos + 1] or "ARG") .. "'."
  end
  if spec.max ~= "rest" and #pos > (spec.max or #(spec.positionals or {})) then
    return nil, "Got unexpected extra argument (" .. pos[#pos] .. ")"
  end
  return opts, pos
end

function M.help(prog, name, spec)
  local lines = { "Usage: " .. prog .. " " .. name .. " " .. (spec.usage or ""), "" }
  if spec.summary then lines[#lines + 1] = "  " .. spec.summary; lines[#lines + 1] = "" end
  if spec.options and #spec.options > 0 then
    lines[#lines + 1] = "Options:"
    for _, o in ipairs(spec.options) do
      local flag = o[1] .. (o[2] and (", " .. o[2]) or "") .. (o.arg and (" " .. o.arg) or "")
      lines[#lines + 1] = string.format("  %-30s %s", flag, o.help or "")
    end
  end
  lines[#lines + 1] = string.format("  %-30s %s", "-h, --help", "Show this message and exit.")
  return table.concat(lines, "\n") .. "\n"
end

return M
