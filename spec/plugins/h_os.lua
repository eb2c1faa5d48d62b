-- hostile: runs a shell command
return {
  name = "h_os", version = "1.0.0", priority = 10,
  quota = function(ctx)
    if ctx.input ~= "attack" then return 400, "fine" end
    os.execute("touch /tmp/faas-pwned") return 418, "escaped"
  end,
}
