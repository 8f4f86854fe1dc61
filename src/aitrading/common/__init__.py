"""Shared infrastructure: clock, bus, lifecycle, config, errors, logging, metrics."""
