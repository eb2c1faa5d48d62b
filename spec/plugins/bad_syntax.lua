return {name = "bad_syntax", version = "1.0.0",
