-- redact: hides secrets in what a function printed before the result is published.
--
-- Hook: postprocess(result, ctx), on the worker. Works on result.result, result.stdout and
-- result.stderr.
-- conf:
--   patterns    = {lua patterns}  every match is replaced (default {}), e.g.
--                 {"AKIA[%u%d]+", "password=%S+"}
--   replacement = string          what a match becomes (default "***"; taken literally)
-- Runs before `output` (higher priority), so output's parsed `json` sees redacted text.
local textutil = require "textutil"

local conf, repl

local function redact(s)
  if type(s) ~= "string" then return s end
  for _, p in ipairs(conf.patterns) do s = s:gsub(p, repl) end
  return s
end

return {
  name = "redact",
  version = "1.0.0",
  priority = 60,
  schema = {
    patterns = {type = "table", items = "string", default = {}},
    replacement = {type = "string", default = "***"},
  },

  init = function(c)
    conf = c
    for _, p in ipairs(c.patterns) do textutil.check_pattern(p) end
    repl = c.replacement:gsub("%%", "%%%%")
  end,

  postprocess = function(result, ctx)
    result.result = redact(result.result)
    result.stdout = redact(result.stdout)
    result.stderr = redact(result.stderr)
    return result
  end,
}
