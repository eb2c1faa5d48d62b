-- input_limits: checks the execution input (the bytes sent to the function's stdin).
--
-- Hook: validate_execution(req, ctx), before an execution is queued.
-- conf:
--   max_bytes    = integer  largest input accepted, in bytes (0: no limit of this plugin;
--                           limits.input in config.lua still applies). Default 1048576.
--   require_json = boolean  the input must be a JSON document. Default false.
-- Rejects with 413 "input too large" or 400 "input must be JSON".
local conf

return {
  name = "input_limits",
  version = "1.0.0",
  priority = 90,
  schema = {
    max_bytes = {type = "integer", default = 1048576, min = 0},
    require_json = {type = "boolean", default = false},
  },

  init = function(c) conf = c end,

  validate_execution = function(req, ctx)
    local size = req.input_size or 0
    if conf.max_bytes > 0 and size > conf.max_bytes then
      return 413, "input too large"
    end
    if conf.require_json and faas.json.decode(req.input or "") == nil then
      return 400, "input must be JSON"
    end
  end,
}
