-- fixture: checks that the shared library tables are intact (runs after h_rawset).
return {
  name = "h_victim", version = "1.0.0", priority = 1,
  quota = function(ctx)
    if ("a"):upper() ~= "A" or string.upper("a") ~= "A" then return 418, "string leaked" end
    if type(faas.now()) ~= "number" then return 418, "faas leaked" end
    if table.concat({"a", "b"}) ~= "ab" then return 418, "table leaked" end
    if tostring(1) ~= "1" then return 418, "globals leaked" end
    if getmetatable("") ~= false then return 418, "string metatable reachable" end
    for _ in ipairs({1}) do end
    return 400, "clean"
  end,
}
