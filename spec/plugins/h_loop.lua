-- hostile: loops forever
return {
  name = "h_loop", version = "1.0.0", priority = 10,
  quota = function(ctx)
    if ctx.input ~= "attack" then return 400, "fine" end
    while true do end
  end,
}
