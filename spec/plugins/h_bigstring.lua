-- hostile: asks for a 1 GB string
return {
  name = "h_bigstring", version = "1.0.0", priority = 10,
  quota = function(ctx)
    if ctx.input ~= "attack" then return 400, "fine" end
    local s = string.rep("x", 1e9) return 418, "escaped " .. #s
  end,
}
