--- The trace commands of the CLI: `trace [ID]` (one delegation tree, as
--- text, JSON, SVG or HTML) and `traces` (the recent ones, one line
--- each). Returns {trace =, traces =}; see ad.cli for the shape.
local core = require "ad.core"
local json = require "ad.infra.json"
local util = require "ad.infra.util"
local common = require "ad.cli.common"

local out, err = common.out, common.err
local clean = require("ad.domain.trace_view").clean

local C = {}

-- The terminal's width (COLUMNS, else 100).
local function width()
  local n = tonumber(os.getenv("COLUMNS") or "")
  return (n and n >= 40) and math.floor(n) or 100
end

-- A span's start as a date ("?" for no time a date can show).
local function started(t)
  local n = type(t) == "number" and t == t and t > -1e15 and t < 1e15 and math.floor(t)
  return n and os.date("%Y-%m-%d %H:%M:%S", n) or "?"
end

-- The process's umask (Linux says it in /proc/self/status; 022 if not).
local function umask()
  local f = io.open("/proc/self/status", "r")
  local text = f and f:read("a") or ""
  if f then f:close() end
  return tonumber(text:match("\nUmask:%s*(%d+)") or "022", 8)
end

-- A picture to FILE as a shell's > would write it, but whole or not at
-- all: a new or regular file is replaced at once (the target of a
-- symbolic link, not the link), and anything else (a device, a pipe:
-- /dev/stdout) is written in place, never replaced. As with >, a new
-- file's mode is 0666 less the umask, and a file replaced keeps its own.
local function write_file(path, text)
  local kind, _, old_mode = core.fs.stat(path)
  local ok, msg
  if kind == "dir" then
    ok, msg = nil, "it is a directory"
  elseif kind == "other" then
    local f
    f, msg = io.open(path, "wb")
    if f then
      ok, msg = f:write(text)
      local closed, cmsg = f:close()
      if ok then ok, msg = closed, cmsg end
    end
  else
    local mode = kind == "file" and old_mode or (438 & ~umask()) -- 0666
    ok, msg = core.fs.write_atomic(kind and core.fs.realpath(path) or path, text, mode)
  end
  if not ok then
    err("Error: cannot write ", path, ": ", tostring(msg))
    return false
  end
  return true
end

C.trace = {
  usage = "[ID] [--json] [--svg FILE] [--html FILE]",
  summary = "Show a delegation tree: who dispatched whom, status, time and cost.",
  options = { common.JSON_OPT,
    { "--svg", arg = "FILE", help = "Also write the tree as an SVG timeline to FILE." },
    { "--html", arg = "FILE", help = "Also write a self-contained HTML page of it to FILE." } },
  positionals = { "ID" }, min = 0, max = 1,
  run = function(o, pos)
    if pos[1] and not pos[1]:find("%S") then
      -- (an empty $ID in a script: not "the last tree")
      err("Error: Invalid value for 'ID': it is empty (leave it out for the last tree).")
      return 2
    end
    local trace = require "ad.domain.trace"
    local t, msg = trace.show(pos[1], { width = width(), color = core.sys.isatty(1) })
    if not t then
      err("Error: ", msg)
      return 1
    end
    local view = require "ad.domain.trace_view"
    if o.svg and not write_file(o.svg, view.svg(t.root)) then return 1 end
    if o.html and not write_file(o.html, view.html(t.root)) then return 1 end
    if o.json then
      return common.json_out(json.object({ trace_id = t.trace_id, summary = t.summary,
        spans = json.array(t.spans) }, { "trace_id", "summary", "spans" }))
    end
    local s = t.summary
    out("Trace ", t.trace_id, ": ", s.spans, " span(s), ", string.format("$%.4f", s.total_cost_usd),
      ", ", string.format("%.1fs", s.duration_ms / 1000), ", ", s.status)
    out(t.text)
    return 0
  end,
}

C.traces = {
  usage = "[--limit N] [--json]",
  summary = "List recent delegation trees, newest first.",
  options = { { "--limit", arg = "N", type = "int", help = "How many (default 20)." }, common.JSON_OPT },
  run = function(o)
    if o.limit and o.limit < 1 then
      common.err("Error: --limit must be at least 1 (got ", o.limit, ").")
      return 2
    end
    local store = require "ad.storage.traces"
    local trace = require "ad.domain.trace"
    local list = json.array()
    local ids, spans = store.recent(o.limit or 20)
    for _, id in ipairs(ids) do
      list[#list + 1] = trace.summary(id, spans[id] or {})
    end
    if o.json then return common.json_out(list) end
    if #list == 0 then
      out("No traces recorded yet.")
      return 0
    end
    out((string.format("%-32s  %-19s  %5s  %9s  %8s  %-9s  %s", "TRACE", "STARTED", "SPANS",
      "COST", "TIME", "STATUS", "ROOT"):gsub("%s+$", "")))
    for _, s in ipairs(list) do
      out(string.format("%-32s  %-19s  %5d  %9s  %8s  %-9s  %s", s.trace_id,
        started(s.start), s.spans,
        string.format("$%.4f", s.total_cost_usd), string.format("%.1fs", s.duration_ms / 1000),
        -- (a task's control characters and bidi overrides stay off the
        -- terminal, as in the tree view)
        s.status, clean(util.cut((s.agent or s.kind or "") .. ": " .. (s.task or ""), 60))))
    end
    return 0
  end,
}

return C
