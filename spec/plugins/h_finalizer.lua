-- hostile: plants a finalizer that never returns. Lua runs __gc with debug hooks off (and
-- at lua_close), where no budget could stop it, so setmetatable refuses __gc.
return {
  name = "h_finalizer", version = "1.0.0", priority = 10,
  quota = function(ctx)
    if ctx.input ~= "attack" then return 400, "fine" end
    local ok = pcall(setmetatable, {}, {__gc = function() while true do end end})
    if ok then return 418, "planted" end
    local mt = {}
    setmetatable({}, mt)
    mt.__gc = function() while true do end end -- too late: not marked for finalization
    collectgarbage("count")
    return 403, "refused"
  end,
}
