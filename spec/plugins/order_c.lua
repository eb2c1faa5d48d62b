-- fixture: appends its letter to result.order (priority 9)
return {
  name = "order_c", version = "1.0.0", priority = 9,
  postprocess = function(result, ctx)
    result.order = (result.order or "") .. "c"
    return result
  end,
}
