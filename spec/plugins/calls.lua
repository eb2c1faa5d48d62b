-- fixture: counts its calls in a chunk-local; each lua_State has its own count
local n = 0
return {
  name = "calls", version = "1.0.0", priority = 1,
  quota = function(ctx)
    n = n + 1
    return 400, tostring(n)
  end,
}
