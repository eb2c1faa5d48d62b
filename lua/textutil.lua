-- textutil: string helpers for plugins (require "textutil"). Plain Lua, runs in the calling
-- plugin's sandbox and under its budget. Written to stay linear in the input size: no
-- patterns with nested backtracking.
local M = {}

-- Removes ANSI escape sequences: CSI (ESC [ ... final), OSC (ESC ] ... BEL or ESC \) and
-- two-byte escapes (ESC + one of @-_).
function M.strip_ansi(s)
  s = s:gsub("\27%[[0-?]*[ -/]*[@-~]", "")
  s = s:gsub("\27%][^\7\27]*\7", "")
  s = s:gsub("\27%][^\7\27]*\27\\", "")
  s = s:gsub("\27[@-_]", "")
  return s
end

-- Removes control characters other than newline and tab (CR, BEL, NUL, DEL, ...).
function M.strip_control(s)
  return (s:gsub("[%z\1-\8\11-\31\127]", ""))
end

-- Leading and trailing whitespace removed.
function M.trim(s)
  local i = s:find("%S")
  if not i then return "" end
  local j = #s
  while j > i and s:find("^%s", j) do j = j - 1 end
  return s:sub(i, j)
end

-- At most n bytes of s, never cutting a UTF-8 sequence in half. Second result: whether it
-- cut anything.
function M.cut(s, n)
  if #s <= n then return s, false end
  local j = n
  while j > 0 do
    local b = s:byte(j + 1)
    if b == nil or b < 0x80 or b >= 0xC0 then break end
    j = j - 1
  end
  return s:sub(1, j), true
end

-- Checks that p is a valid Lua pattern; raises "bad pattern 'p': reason" otherwise.
function M.check_pattern(p)
  local ok, err = pcall(string.find, "", p)
  if not ok then error("bad pattern '" .. p .. "': " .. tostring(err), 2) end
end

return M
