-- hostile: stops the collector
return {
  name = "h_gc", version = "1.0.0", priority = 10,
  quota = function(ctx)
    if ctx.input ~= "attack" then return 400, "fine" end
    collectgarbage("stop") return 418, "escaped"
  end,
}
