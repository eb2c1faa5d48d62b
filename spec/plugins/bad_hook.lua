return {name = "bad_hook", version = "1.0.0", priority = 1, quota = "yes"}
