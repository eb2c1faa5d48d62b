-- fixture: postprocess return values chosen by ctx.input
return {
  name = "pp_mixed", version = "1.0.0", priority = 1,
  postprocess = function(result, ctx)
    if ctx.input == "nil" then result.result = "changed in place" return nil end
    if ctx.input == "number" then return 5 end
    if ctx.input == "array" then return {1, 2} end
    if ctx.input == "function" then return {f = print} end
    result.result = "replaced"
    result.list = {}
    return result
  end,
}
