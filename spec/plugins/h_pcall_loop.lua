-- hostile: hides an endless loop in pcall
return {
  name = "h_pcall_loop", version = "1.0.0", priority = 10,
  quota = function(ctx)
    if ctx.input ~= "attack" then return 400, "fine" end
    for _ = 1, 3 do pcall(function() while true do end end) end
    return 418, "escaped"
  end,
}
