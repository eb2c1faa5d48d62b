-- hostile: repeats an empty string 10^15 times
return {
  name = "h_emptyrep", version = "1.0.0", priority = 10,
  quota = function(ctx)
    if ctx.input ~= "attack" then return 400, "fine" end
    local a = string.rep("", 1e15); local b = ("x"):rep(0); local c = ("ab"):rep(3, "-")
    if a ~= "" or b ~= "" or c ~= "ab-ab-ab" then return 418, "wrong" end
    return 403, "fast"
  end,
}
