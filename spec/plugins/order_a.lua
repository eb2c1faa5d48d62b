-- fixture: appends its letter to result.order (priority 5)
return {
  name = "order_a", version = "1.0.0", priority = 5,
  postprocess = function(result, ctx)
    result.order = (result.order or "") .. "a"
    return result
  end,
}
