-- The sandbox prelude. The plugin host (core/plugin.c) runs this file once per lua_State,
-- before any plugin, in a private environment plugins cannot reach, and keeps the table it
-- returns. Plugins never see these functions directly; they see their effects:
--
--   check_conf(schema, conf)  validates a plugin's `conf` against its `schema` and fills in
--                             defaults (errors name the field).
--   readonly(t, what)         a read-only proxy of t (nested tables are proxied too); this is
--                             what a plugin gets as `conf` and `faas.conf`.
--   table_move(...)           table.move written in Lua, so the instruction budget applies to
--                             it (the C version can loop 2^63 times without running a single
--                             Lua instruction).
--
-- Conf schema (a plugin's optional `schema` field): a table of field name -> spec, where a
-- spec is a table with
--   type      "number" | "integer" | "string" | "boolean" | "table"   (required)
--   required  true when the operator must set it (default false)
--   default   value used when the field is absent (tables are copied)
--   min, max  bounds: the value for number/integer, the length for string, the number of
--             elements for table
--   items     for type "table": the type every element must have (a sequence, e.g. a
--             list of Lua patterns: items = "string")
-- A conf field that is not in the schema is an error, so typos in config.lua are caught when
-- the plugin loads. A plugin without a schema receives its conf unchecked.
--
-- Example:
--   schema = {
--     max_bytes    = {type = "integer", default = 1048576, min = 0},
--     require_json = {type = "boolean", default = false},
--     allow        = {type = "table", items = "string", default = {}},
--   }

local spec_keys = {type = true, required = true, default = true, min = true, max = true,
                   items = true}
local types = {number = true, integer = true, string = true, boolean = true, table = true}

local function type_of(v)
  if math.type(v) == "integer" then return "integer" end
  return type(v)
end

local function has_type(v, want)
  local t = type(v)
  if want == "integer" then return math.type(v) == "integer" end
  return t == want
end

local function copy(v)
  if type(v) ~= "table" then return v end
  local c = {}
  for k, x in next, v do c[k] = copy(x) end
  return c
end

local function fail(field, msg)
  error("conf field '" .. tostring(field) .. "': " .. msg, 0)
end

local function check_conf(schema, conf)
  if schema == nil then return conf end
  if type(schema) ~= "table" then error("schema must be a table", 0) end
  for field, spec in next, schema do
    if type(field) ~= "string" then error("schema keys must be strings", 0) end
    if type(spec) ~= "table" then error("schema field '" .. field .. "' must be a table", 0) end
    for k in next, spec do
      if not spec_keys[k] then
        error("schema field '" .. field .. "': unknown key '" .. tostring(k) .. "'", 0)
      end
    end
    if not types[spec.type] then
      error("schema field '" .. field .. "': type must be number, integer, string, boolean or table", 0)
    end
    if spec.items ~= nil and (spec.type ~= "table" or not types[spec.items]) then
      error("schema field '" .. field .. "': bad items", 0)
    end
  end
  for field in next, conf do
    if schema[field] == nil then fail(field, "unknown field") end
  end
  for field, spec in next, schema do
    local v = conf[field]
    if v == nil then
      if spec.required then fail(field, "is required") end
      if spec.default ~= nil then conf[field] = copy(spec.default) end
    else
      if not has_type(v, spec.type) then
        fail(field, "expected " .. spec.type .. ", got " .. type_of(v))
      end
      local size = v
      if spec.type == "string" then size = #v
      elseif spec.type == "table" then
        size = 0
        for k, x in next, v do
          size = size + 1
          if spec.items and not has_type(x, spec.items) then
            fail(field, "element " .. tostring(k) .. ": expected " .. spec.items ..
                 ", got " .. type_of(x))
          end
        end
      elseif spec.type == "boolean" then size = nil end
      if size ~= nil and spec.min ~= nil and size < spec.min then
        fail(field, "must be at least " .. tostring(spec.min))
      end
      if size ~= nil and spec.max ~= nil and size > spec.max then
        fail(field, "must be at most " .. tostring(spec.max))
      end
    end
  end
  return conf
end

local function readonly(t, what)
  local cache = {}
  local function wrap(v)
    if type(v) ~= "table" then return v end
    local p = cache[v]
    if p == nil then
      p = readonly(v, what)
      cache[v] = p
    end
    return p
  end
  return setmetatable({}, {
    __index = function(_, k) return wrap(t[k]) end,
    __newindex = function() error(what .. " is read-only", 2) end,
    __pairs = function()
      return function(_, k)
        local nk, nv = next(t, k)
        return nk, wrap(nv)
      end, nil, nil
    end,
    __len = function() return #t end,
    __metatable = false,
  })
end

local function table_move(a1, f, e, t, a2)
  if a2 == nil then a2 = a1 end
  if e >= f then
    if t > e or t <= f or a1 ~= a2 then
      for i = 0, e - f do a2[t + i] = a1[f + i] end
    else
      for i = e - f, 0, -1 do a2[t + i] = a1[f + i] end
    end
  end
  return a2
end

return {check_conf = check_conf, readonly = readonly, table_move = table_move}
