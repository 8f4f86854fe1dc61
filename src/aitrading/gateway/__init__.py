"""API gateway (port 8000): the platform's front door."""
