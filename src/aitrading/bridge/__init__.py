"""Data bridge (port 8001): agent WebSocket, tick validation, fan-out to the bus, durable storage."""
