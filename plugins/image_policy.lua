-- image_policy: which Docker images users may register as functions.
--
-- Hook: validate_function(fn, ctx), when a function is registered.
-- conf:
--   allow       = {lua patterns}  the image must match one of them (empty: any image)
--   deny        = {lua patterns}  an image matching one of them is refused (checked first)
--   require_tag = boolean         the image must name a tag ("busybox:1.36") or a digest
--                                 ("busybox@sha256:..."); a bare "busybox" is refused
-- Patterns are matched with string.find against the whole reference, so anchor them:
--   allow = {"^localhost:5000/", "^faas/[%w_-]+:"}
-- Rejects with 400 "image 'x' is not allowed" or 400 "image 'x' must have a tag or digest".
local textutil = require "textutil"

local conf

return {
  name = "image_policy",
  version = "1.0.0",
  priority = 100,
  schema = {
    allow = {type = "table", items = "string", default = {}},
    deny = {type = "table", items = "string", default = {}},
    require_tag = {type = "boolean", default = false},
  },

  init = function(c)
    conf = c
    for _, p in ipairs(c.allow) do textutil.check_pattern(p) end
    for _, p in ipairs(c.deny) do textutil.check_pattern(p) end
  end,

  validate_function = function(fn, ctx)
    local image = fn.image
    if type(image) ~= "string" then return end
    for _, p in ipairs(conf.deny) do
      if image:find(p) then return 400, "image '" .. image .. "' is not allowed" end
    end
    if #conf.allow > 0 then
      local ok = false
      for _, p in ipairs(conf.allow) do
        if image:find(p) then ok = true break end
      end
      if not ok then return 400, "image '" .. image .. "' is not allowed" end
    end
    if conf.require_tag then
      -- a tag is a ':' in the last path component (a ':' before a '/' is a registry port)
      if not image:find("@", 1, true) and not image:find(":[^/]*$") then
        return 400, "image '" .. image .. "' must have a tag or digest"
      end
    end
  end,
}
