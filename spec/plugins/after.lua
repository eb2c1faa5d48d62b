-- fixture: rejects with 400 "after" (low priority: runs after the hostile plugins)
return {
  name = "after", version = "1.0.0", priority = -5,
  quota = function(ctx) return 400, "after" end,
}
