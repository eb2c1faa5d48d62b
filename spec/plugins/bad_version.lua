return {name = "bad_version", version = "1.0", priority = 1}
