-- fixture: quota return values chosen by ctx.input
return {
  name = "status", version = "1.0.0", priority = 1,
  quota = function(ctx)
    local i = ctx.input
    if i == "200" then return 200, "ok" end
    if i == "500" then return 500, "boom" end
    if i == "str" then return "400", "text status" end
    if i == "msg" then return 400, {} end
    if i == "retry" then return 429, "slow down", 2.5 end
    if i == "badretry" then return 429, "slow down", "soon" end
    if i == "nomsg" then return 404 end
    if i == "float" then return 400.5, "x" end
  end,
}
