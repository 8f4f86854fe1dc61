"""Tick and bar storage in ClickHouse SQL: embedded chDB by default, a ClickHouse server when split.

`TickStore` is the interface; `make_tick_store` builds the configured one. See `base` for the contract
(exact values, exactly-once ingest marks, half-open ranges, keyset pagination) and `sql` for the schema.
"""

from aitrading.storage.ticks.base import TickCursor, TickStore, next_tick_cursor
from aitrading.storage.ticks.chdb_store import ChDBTickStore
from aitrading.storage.ticks.clickhouse_store import ClickHouseTickStore
from aitrading.storage.ticks.factory import TickStoreKind, make_tick_store

__all__ = [
    "ChDBTickStore",
    "ClickHouseTickStore",
    "TickCursor",
    "TickStore",
    "TickStoreKind",
    "make_tick_store",
    "next_tick_cursor",
]
