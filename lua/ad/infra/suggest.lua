--- "Did you mean ...?" for names a person typed: the closest candidate by
--- edit distance (insertions, deletions, substitutions and swaps of two
--- neighbours count one each; letter case costs nothing extra when that is
--- the only difference), when it is close enough to be the likely intent.
local M = {}

-- Optimal string alignment distance between a and b (byte-wise: names,
-- options and modes are ASCII).
local function distance(a, b)
  local la, lb = #a, #b
  local prev2, prev, cur = {}, {}, {}
  for j = 0, lb do prev[j] = j end
  for i = 1, la do
    cur = { [0] = i }
    local ca = a:byte(i)
    for j = 1, lb do
      local cb = b:byte(j)
      local cost = ca == cb and 0 or 1
      local d = math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
      if i > 1 and j > 1 and ca == b:byte(j - 1) and a:byte(i - 1) == cb then
        d = math.min(d, prev2[j - 2] + 1)
      end
      cur[j] = d
    end
    prev2, prev = prev, cur
  end
  return prev[lb]
end
M.distance = distance

--- The candidate closest to word, or nil when none is close: a
--- case-insensitive match, or one within a third of the word's length
--- (at least 1, at most 3 edits). Ties go to the earlier candidate.
function M.closest(word, candidates)
  if type(word) ~= "string" or word == "" then return nil end
  local lw = word:lower()
  local best, best_d
  for _, c in ipairs(candidates or {}) do
    if c ~= word then
      local d = c:lower() == lw and 0 or distance(lw, c:lower())
      if best_d == nil or d < best_d then best, best_d = c, d end
    end
  end
  if best == nil then return nil end
  local limit = math.max(1, math.min(3, #word // 3))
  if best_d <= limit then return best end
  return nil
end

--- " Did you mean 'x'?" (with a leading space), or "" when nothing is close.
--- quote = false leaves the suggestion unquoted (options: --name).
function M.hint(word, candidates, quote)
  local c = M.closest(word, candidates)
  if not c then return "" end
  if quote == false then return " Did you mean " .. c .. "?" end
  return " Did you mean '" .. c .. "'?"
end

return M
