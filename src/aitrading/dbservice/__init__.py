"""Database service (port 8008): migrations, history/bar/audit queries, storage health."""
