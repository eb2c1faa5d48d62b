-- hostile: opens a file
return {
  name = "h_io", version = "1.0.0", priority = 10,
  quota = function(ctx)
    if ctx.input ~= "attack" then return 400, "fine" end
    local f = io.open("/etc/passwd") return 418, "escaped"
  end,
}
