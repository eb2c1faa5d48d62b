-- quota: per-user limits on functions and executions.
--
-- Hooks: validate_function(fn, ctx) (registration) and quota(ctx) (each execution).
-- conf (0 = no limit, the default for each):
--   max_functions         = integer  functions a user may have; needs ctx.function_count
--                                    (given by the API). 429 "function limit of N reached"
--                                    (a quota, like the others; delete one to go on).
--   executions_per_minute = integer  executions a user may start per fixed minute window,
--                                    counted in the store (shared by every API replica) with
--                                    faas.counter. 429 "rate limit of N executions per
--                                    minute exceeded" with retry_after = seconds left.
--   max_concurrent        = integer  queued + running executions a user may have; needs
--                                    ctx.active_executions. 429 "too many concurrent
--                                    executions (max N)" with retry_after = 1.
local conf

return {
  name = "quota",
  version = "1.0.0",
  priority = 80,
  schema = {
    max_functions = {type = "integer", default = 0, min = 0},
    executions_per_minute = {type = "integer", default = 0, min = 0},
    max_concurrent = {type = "integer", default = 0, min = 0},
  },

  init = function(c) conf = c end,

  validate_function = function(fn, ctx)
    local n = ctx.function_count
    if conf.max_functions > 0 and n and n >= conf.max_functions then
      return 429, "function limit of " .. conf.max_functions .. " reached"
    end
  end,

  quota = function(ctx)
    -- reading ctx.active_executions costs a store query: only when the limit is on
    if conf.max_concurrent > 0 then
      local active = ctx.active_executions
      if active and active >= conf.max_concurrent then
        return 429, "too many concurrent executions (max " .. conf.max_concurrent .. ")", 1
      end
    end
    if conf.executions_per_minute > 0 and ctx.user and ctx.user.id then
      local n, reset = faas.counter.incr("exec:" .. ctx.user.id, 60)
      if n > conf.executions_per_minute then
        return 429, "rate limit of " .. conf.executions_per_minute ..
                    " executions per minute exceeded", reset
      end
    end
  end,
}
