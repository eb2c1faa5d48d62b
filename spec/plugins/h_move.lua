-- hostile: moves 2^63 elements
return {
  name = "h_move", version = "1.0.0", priority = 10,
  quota = function(ctx)
    if ctx.input ~= "attack" then return 400, "fine" end
    table.move({}, 1, math.maxinteger, 2) return 418, "escaped"
  end,
}
