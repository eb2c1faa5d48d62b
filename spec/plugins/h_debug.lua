-- hostile: uses debug.sethook
return {
  name = "h_debug", version = "1.0.0", priority = 10,
  quota = function(ctx)
    if ctx.input ~= "attack" then return 400, "fine" end
    debug.sethook() return 418, "escaped"
  end,
}
