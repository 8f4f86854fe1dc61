"""Immutable domain types shared by every component. Imports nothing from the services."""
