-- output: cleans up what a function printed before the result is published.
--
-- Hook: postprocess(result, ctx), on the worker. Works on result.result and result.stdout.
-- conf:
--   strip_ansi = boolean  remove ANSI escape sequences and control characters other than
--                         newline and tab (default true)
--   trim       = boolean  remove leading and trailing whitespace (default true)
--   max_length = integer  keep at most this many bytes (never splitting a UTF-8 character)
--                         and set result.output_truncated = true; 0 = no cap (default)
--   parse_json = boolean  when result.result is a JSON document, add it decoded as
--                         result.json (default true)
local textutil = require "textutil"

local conf

local function clean(s)
  if type(s) ~= "string" then return s, false end
  if conf.strip_ansi then s = textutil.strip_control(textutil.strip_ansi(s)) end
  if conf.trim then s = textutil.trim(s) end
  local cut = false
  if conf.max_length > 0 then s, cut = textutil.cut(s, conf.max_length) end
  return s, cut
end

return {
  name = "output",
  version = "1.0.0",
  priority = 50,
  schema = {
    strip_ansi = {type = "boolean", default = true},
    trim = {type = "boolean", default = true},
    max_length = {type = "integer", default = 0, min = 0},
    parse_json = {type = "boolean", default = true},
  },

  init = function(c) conf = c end,

  postprocess = function(result, ctx)
    local cut1, cut2
    result.result, cut1 = clean(result.result)
    result.stdout, cut2 = clean(result.stdout)
    if cut1 or cut2 then result.output_truncated = true end
    if conf.parse_json and type(result.result) == "string" and result.result ~= "" then
      -- a huge document may not fit the memory cap: then there is just no `json` field
      local ok, v = pcall(faas.json.decode, result.result)
      if ok and v ~= nil then result.json = v end
    end
    return result
  end,
}
