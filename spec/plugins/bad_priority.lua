return {name = "bad_priority", version = "1.0.0", priority = 1.5}
