"""Config service (port 8012): hierarchical config global → tenant → user, change events."""
