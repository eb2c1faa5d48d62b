-- hostile: requires os
return {
  name = "h_require_os", version = "1.0.0", priority = 10,
  quota = function(ctx)
    if ctx.input ~= "attack" then return 400, "fine" end
    local os2 = require "os" return 418, "escaped"
  end,
}
