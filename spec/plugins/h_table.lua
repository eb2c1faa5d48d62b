-- hostile: grows a table until memory runs out
return {
  name = "h_table", version = "1.0.0", priority = 10,
  quota = function(ctx)
    if ctx.input ~= "attack" then return 400, "fine" end
    local t, i = {}, 0
    while true do i = i + 1 t[i] = {i} end
  end,
}
