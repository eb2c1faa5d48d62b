return {name = "bad_schema", version = "1.0.0", priority = 1, schema = {x = {type = "float"}}}
