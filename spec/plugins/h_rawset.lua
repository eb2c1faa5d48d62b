-- hostile: tampers with every shared table it can reach; h_victim (lower priority, same
-- state) must not notice.
return {
  name = "h_rawset", version = "1.0.0", priority = 10,
  quota = function(ctx)
    if ctx.input ~= "attack" then return end
    local evil = function() return "pwned" end
    rawset(string, "upper", evil)
    rawset(faas, "now", evil)
    rawset(table, "concat", evil)
    pcall(function() getmetatable("").__index.upper = evil end)
    pcall(function() string.upper = evil end)
    pcall(setmetatable, _G, {__index = function() return evil end})
    pcall(rawset, getmetatable(_G) or {}, "__index", {})
    _G.tostring = evil
    ipairs = evil
  end,
}
