-- hostile: sets a metatable on _G
return {
  name = "h_setmt", version = "1.0.0", priority = 10,
  quota = function(ctx)
    if ctx.input ~= "attack" then return 400, "fine" end
    setmetatable(_G, {__index = function() return "x" end}) return 418, "escaped"
  end,
}
