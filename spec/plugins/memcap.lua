-- fixture: the allocator refuses growth past memory_limit (16 MiB in the test); the refusal
-- is an ordinary error the plugin may catch, and the state stays usable.
return {
  name = "memcap", version = "1.0.0", priority = 1,
  quota = function(ctx)
    local parts = {}
    local kb = string.rep("x", 1024)
    for i = 1, 160 do parts[i] = string.rep(kb, 63) .. string.rep("y", 1016) .. string.format("%08d", i) end
    local ok, err = pcall(table.concat, parts)
    if ok then return 418, "allocated past the cap" end
    if collectgarbage("count") > 16384 then return 418, "counted past the cap" end
    parts = nil
    return 403, "capped: " .. tostring(err)
  end,
}
