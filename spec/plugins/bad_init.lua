return {name = "bad_init", version = "1.0.0", priority = 1, init = function() error("init boom") end}
