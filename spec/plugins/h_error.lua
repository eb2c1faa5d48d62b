-- hostile: raises an error
return {
  name = "h_error", version = "1.0.0", priority = 10,
  quota = function(ctx)
    if ctx.input ~= "attack" then return 400, "fine" end
    error("x")
  end,
}
