"""Build the configured tick store: embedded chDB (all-in-one default) or a ClickHouse server (split)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from aitrading.common.errors import ConfigError
from aitrading.storage.ticks.base import TickStore

__all__ = ["TickStoreKind", "make_tick_store"]

TickStoreKind = Literal["chdb", "clickhouse"]


def make_tick_store(
    kind: TickStoreKind, *, chdb_path: Path | str | None = None, clickhouse_url: str | None = None
) -> TickStore:
    """Return an unstarted tick store of `kind`; raise `ConfigError` naming the missing setting."""
    if kind == "chdb":
        if not chdb_path:
            raise ConfigError("tick store kind 'chdb' needs chdb_path (the embedded database's directory)")
        from aitrading.storage.ticks.chdb_store import ChDBTickStore

        return ChDBTickStore(chdb_path)
    if kind == "clickhouse":
        if not clickhouse_url:
            raise ConfigError(
                "tick store kind 'clickhouse' needs clickhouse_url, e.g. http://default@127.0.0.1:8123/default"
            )
        from aitrading.storage.ticks.clickhouse_store import ClickHouseTickStore

        return ClickHouseTickStore(clickhouse_url)
    raise ConfigError(f"unknown tick store kind {kind!r}; use 'chdb' or 'clickhouse'")
