-- hostile: loads bytecode
return {
  name = "h_load_binary", version = "1.0.0", priority = 10,
  quota = function(ctx)
    if ctx.input ~= "attack" then return 400, "fine" end
    if string.dump then return 418, "string.dump exists" end
    local f, e = load("\27Lua\84\0\25\147\13\10\26\10\4\8\8\120\86\0\0\0\0\0\0\0\0\0\0\0\40\119\64\1")
    if f then return 418, "escaped" end
    return 403, tostring(e)
  end,
}
