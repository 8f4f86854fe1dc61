"""Persistent state: the OLTP database (`oltp`), tick and bar storage (`ticks`) and the cache (`cache`).

Every store has an embedded default for all-in-one runs (SQLite, chDB, in-process memory) and a server
implementation for split deployments (PostgreSQL, ClickHouse, Redis) behind the same interface.
"""
