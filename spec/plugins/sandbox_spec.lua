-- Sandbox spec, run THROUGH THE REAL HOST by spec/unit/test_plugin.c ("sandbox spec passes
-- inside the host"). Its validate_execution hook runs every check below inside the sandbox
-- and answers 400 "ok <n>" when all pass, or 418 "<check>: <detail>" for the first failure.
-- The test enables it with conf {"limit": 3, "nested": {"k": "v"}} and a ctx whose input is
-- "in\0put", user {id="u1"}, function {image="busybox:latest", env={A="b"}}, function_count 3.
local checks = {}
local function check(name, f) checks[#checks + 1] = {name, f} end

check("no io, debug, package, coroutine", function()
  return io == nil and debug == nil and package == nil and coroutine == nil
end)
check("no dofile, loadfile", function() return dofile == nil and loadfile == nil end)
check("no string.dump", function() return string.dump == nil and ("").dump == nil end)
check("os is time, clock, date only", function()
  local n = 0
  for _ in pairs(os) do n = n + 1 end
  return n == 3 and type(os.time()) == "number" and type(os.clock()) == "number"
    and os.execute == nil and os.getenv == nil and os.exit == nil and os.remove == nil
end)
check("collectgarbage only counts", function()
  return type(collectgarbage("count")) == "number" and not pcall(collectgarbage, "collect")
    and not pcall(collectgarbage)
end)
check("load runs text in the plugin env", function()
  spec_global = 7
  return load("return 1 + 1")() == 2 and load("return spec_global")() == 7
    and load("return x", "n", "t", {x = 5})() == 5
end)
check("load refuses bytecode", function()
  local f, e = load("\27Lua\84\0")
  local g, e2 = load("return 1", "n", "b")
  return f == nil and e:find("binary") and g == nil and e2:find("binary")
end)
check("load refuses functions", function() return load(function() return nil end) == nil end)
check("json round trips", function()
  local j = faas.json
  return j.encode({a = 1}) == '{"a":1}' and j.decode("[1,2]")[2] == 2
    and j.encode(j.decode("[]")) == "[]" and j.encode(j.decode('{"a":null}')) == '{"a":null}'
    and j.decode("nope") == nil and j.decode('"x"') == "x" and j.decode("1.5") == 1.5
    and not pcall(j.encode, {f = print}) and not pcall(j.encode, 0/0)
end)
check("json nesting is bounded", function()
  local t = {}
  t.self = t
  return not pcall(faas.json.encode, t)
end)
check("conf is read-only with defaults filled", function()
  local c = faas.conf
  return c.limit == 3 and c.nested.k == "v" and c.with_default == "d"
    and not pcall(function() c.limit = 4 end)
    and not pcall(function() c.nested.k = "w" end)
    and c.limit == 3 and c.nested.k == "v" and getmetatable(c) == false
end)
check("faas is read-only", function()
  local n = 0
  for k, v in pairs(faas.conf) do n = n + 1 end
  return not pcall(function() faas.now = print end)
    and not pcall(function() faas.json.encode = print end)
    and not pcall(function() faas.counter.incr = print end)
    and type(faas.now()) == "number" and n == 4 and #faas.conf.list == 2
    and faas.plugin == "sandbox_spec" and faas.json.null ~= nil
end)
check("require loads lua_dir modules once", function()
  local t = require "textutil"
  return type(t.trim) == "function" and require("textutil") == t
end)
check("require refuses the rest", function()
  return not pcall(require, "os") and not pcall(require, "../plugins/quota")
    and not pcall(require, "/etc/passwd") and not pcall(require, "io")
end)
check("shared metatables are protected", function()
  return getmetatable("") == false and getmetatable(_G) == false
    and not pcall(setmetatable, _G, {})
end)
check("ctx is a fresh plain table", function(ctx)
  return ctx.user.id == "u1" and ctx.user.email == "u@example.com"
    and ctx["function"].image == "busybox:latest" and ctx["function"].env.A == "b"
    and ctx["function"].timeout == 30 and ctx.input == "in\0put" and ctx.input_size == 6
    and ctx.request_id == "r1" and ctx.function_count == 3 and ctx.active_executions == nil
    and getmetatable(ctx) == nil
end)
check("string.rep and table.move still work", function()
  local t = table.move({1, 2, 3}, 1, 3, 2)
  return ("x"):rep(3) == "xxx" and string.rep("ab", 2, ",") == "ab,ab"
    and t[1] == 1 and t[2] == 1 and t[3] == 2 and t[4] == 3
    and table.move({1, 2, 3}, 2, 3, 1)[1] == 2
end)
check("print, warn and faas.log go to the log", function()
  print("hello from the sandbox spec", 1, nil)
  warn("a warning ", "from the spec")
  faas.log("info", "faas.log from the spec")
  return not pcall(faas.log, "loud", "x")
end)
check("faas.now is wall-clock milliseconds", function() return faas.now() > 1.6e12 end)
check("_G is the plugin's own env", function()
  _G.mine = 1
  return mine == 1 and _G == _ENV
end)

return {
  name = "sandbox_spec",
  version = "0.1.0",
  priority = 1,
  schema = {
    limit = {type = "integer", required = true, min = 1, max = 10},
    nested = {type = "table"},
    list = {type = "table", items = "string"},
    with_default = {type = "string", default = "d"},
  },
  validate_execution = function(req, ctx)
    if req.input ~= ctx.input or req.input_size ~= 6 then return 418, "req: bad input" end
    for _, c in ipairs(checks) do
      local ok, res = pcall(c[2], ctx)
      if not ok then return 418, c[1] .. ": " .. tostring(res) end
      if not res then return 418, c[1] end
    end
    return 400, "ok " .. #checks
  end,
}
