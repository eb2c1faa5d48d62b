return {version = "1.0.0", priority = 1}
