-- hostile: allocates 64 KiB strings until the memory cap stops it
return {
  name = "h_memory", version = "1.0.0", priority = 10,
  quota = function(ctx)
    if ctx.input ~= "attack" then return 400, "fine" end
    local t = {}
    local kb = string.rep("x", 1024)
    for i = 1, 1000 do t[i] = string.rep(kb, 64) .. i end
    return 418, "escaped"
  end,
}
