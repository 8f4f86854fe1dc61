"""Decision engine (port 8014): strategies and model ensemble → signals with confidence."""
