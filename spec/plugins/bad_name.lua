return {name = "other_name", version = "1.0.0", priority = 1}
