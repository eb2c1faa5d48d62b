-- fixture: faas.counter through the store (key from ctx.input)
return {
  name = "counter", version = "1.0.0", priority = 1,
  quota = function(ctx)
    local ok, v, reset = pcall(faas.counter.incr, ctx.input, 60)
    if not ok then return 400, "error: " .. tostring(v) end
    local g = faas.counter.get(ctx.input, 60)
    return 400, v .. " " .. g .. " " .. reset
  end,
}
