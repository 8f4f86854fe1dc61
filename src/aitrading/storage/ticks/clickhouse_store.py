"""The split-deployment tick store: a ClickHouse server through clickhouse-connect, with the chDB store's SQL.

The store uses clickhouse-connect's synchronous client on one dedicated thread. Its async client is a
thread-pool wrapper that needs the optional `aiohttp` extra; a single thread of our own runs the very same
`TickCore` as the embedded store, keeps one writer's calls in order and needs nothing extra.

Inserts send one Arrow table per write (`insert_arrow`), a single INSERT statement as the ingest-mark
contract requires. The database named in the URL must exist; the store creates its tables.

Testing: the unit tests run this class against a real server only if one answers at
`AITRADING_TEST_CLICKHOUSE_URL` (ClickHouse is not one of the services CI starts, so those tests skip there
too). They also run it through clickhouse-connect's own embedded chDB backend (`chdb:///path` URLs), which
exercises this module's client calls, parameter binding and type mapping without HTTP.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from aitrading.common.errors import AITradingError, OperationalError, TemporaryError
from aitrading.storage.ticks._core import Columns, TickCore, arrow_table
from aitrading.storage.ticks._executor_store import ExecutorTickStore

__all__ = ["ClickHouseDriver", "ClickHouseTickStore", "redact_url"]


def redact_url(url: str) -> str:
    """Return `url` with any password replaced by `***`, for logs and error messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username or ''}:***@{parts.hostname or ''}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


class ClickHouseDriver:
    """A `Driver` over one clickhouse-connect client. Call it from one thread only."""

    def __init__(self, url: str, settings: Mapping[str, Any] | None = None) -> None:
        import clickhouse_connect
        from clickhouse_connect.driver.exceptions import ClickHouseError

        try:
            self._client = clickhouse_connect.get_client(dsn=url, settings=dict(settings or {}))
        except ClickHouseError as exc:
            raise TemporaryError(f"cannot connect to ClickHouse at {redact_url(url)}: {exc}") from exc

    def command(self, query: str, params: Mapping[str, Any] | None = None) -> None:
        self._client.command(query, parameters=dict(params or {}))

    def columns(self, query: str, params: Mapping[str, Any] | None = None) -> list[list[Any]]:
        result = self._client.query(query, parameters=dict(params or {}))
        if not result.result_columns:  # an empty result has no columns, only names
            return [[] for _ in result.column_names]
        return [list(column) for column in result.result_columns]

    def insert(self, table: str, columns: Columns, types: Sequence[str]) -> None:
        self._client.insert_arrow(table, arrow_table(columns, types))

    def close(self) -> None:
        self._client.close()


class ClickHouseTickStore(ExecutorTickStore):
    """Ticks and bars on the ClickHouse server at `url` (`http[s]://user:password@host:port/database`).

    One process should write a database (the data bridge); any number may read. `settings` are ClickHouse
    settings sent with every query.
    """

    name = "tick_store_clickhouse"

    def __init__(self, url: str, *, settings: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        if not url:
            raise OperationalError(
                "ClickHouseTickStore needs a URL such as http://default@127.0.0.1:8123/default"
            )
        self._url = url
        self._settings = dict(settings or {})
        self._own_executor: ThreadPoolExecutor | None = None

    @property
    def url(self) -> str:
        """The server URL without its password."""
        return redact_url(self._url)

    def _translate(self, exc: Exception) -> AITradingError:
        from clickhouse_connect.driver.exceptions import ProgrammingError

        if isinstance(exc, ProgrammingError):  # the SQL or the schema is wrong: retrying will not help
            return OperationalError(f"{self.name}: {exc}")
        return super()._translate(exc)

    async def _open(self) -> tuple[TickCore, Executor]:
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clickhouse")
        try:
            core = await asyncio.get_running_loop().run_in_executor(executor, self._connect)
        except BaseException:
            executor.shutdown(wait=False)
            raise
        self._own_executor = executor
        return core, executor

    def _connect(self) -> TickCore:
        core = TickCore(ClickHouseDriver(self._url, self._settings))
        try:
            core.create_schema()
        except BaseException:
            core.driver.close()
            raise
        return core

    async def _close(self) -> None:
        executor, self._own_executor = self._own_executor, None
        core = self._core
        if executor is None:
            return
        try:
            if core is not None:
                await asyncio.get_running_loop().run_in_executor(executor, core.close)
        finally:
            executor.shutdown(wait=False)
