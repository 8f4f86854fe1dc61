"""A `TickStore` that runs a blocking `TickCore` on one dedicated thread, off the event loop."""

from __future__ import annotations

import asyncio
import functools
from abc import abstractmethod
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor
from typing import TypeVar

from aitrading.common.errors import AITradingError, OperationalError, TemporaryError
from aitrading.model.market import Bar, Tick, Timeframe
from aitrading.storage.ticks._core import TickCore
from aitrading.storage.ticks.base import _NO_MARKS, TickCursor, TickStore

__all__ = ["ExecutorTickStore"]

T = TypeVar("T")


class ExecutorTickStore(TickStore):
    """Base of the concrete stores: `_open` yields a core and the single-thread executor that owns it."""

    def __init__(self) -> None:
        super().__init__()
        self._core: TickCore | None = None
        self._executor: Executor | None = None

    @abstractmethod
    async def _open(self) -> tuple[TickCore, Executor]:
        """Connect, create the schema and return the core with the one thread allowed to use it."""

    @abstractmethod
    async def _close(self) -> None:
        """Release what `_open` acquired."""

    async def _on_start(self) -> None:
        self._core, self._executor = await self._open()

    async def _on_stop(self) -> None:
        try:
            await self._close()
        finally:
            self._core = None
            self._executor = None

    async def _run(self, fn: Callable[..., T], /, *args: object) -> T:
        core, executor = self._core, self._executor
        if core is None or executor is None:
            raise OperationalError(f"{type(self).__name__} is not started (state {self.state.value})")
        call = functools.partial(fn, core, *args)
        try:
            return await asyncio.get_running_loop().run_in_executor(executor, call)
        except AITradingError:
            raise
        except Exception as exc:
            raise self._translate(exc) from exc

    def _translate(self, exc: Exception) -> AITradingError:
        """Map a driver exception to the platform's recovery groups (default: retry)."""
        return TemporaryError(f"{self.name}: {type(exc).__name__}: {exc}")

    async def write_ticks(self, ticks: Sequence[Tick], marks: Mapping[str, int] = _NO_MARKS) -> int:
        return await self._run(TickCore.write_ticks, list(ticks), dict(marks))

    async def durable_marks(self) -> dict[str, int]:
        return await self._run(TickCore.durable_marks)

    async def query_ticks(
        self,
        feed: str,
        symbol: str,
        from_ms: int,
        to_ms: int,
        limit: int = 10_000,
        after: TickCursor | tuple[int, int] | None = None,
    ) -> list[Tick]:
        return await self._run(TickCore.query_ticks, feed, symbol, from_ms, to_ms, limit, after)

    async def write_bars(self, bars: Sequence[Bar]) -> int:
        return await self._run(TickCore.write_bars, list(bars))

    async def query_bars(
        self,
        feed: str,
        symbol: str,
        timeframe: Timeframe | int,
        from_s: int,
        to_s: int,
        limit: int = 10_000,
        after: int | None = None,
    ) -> list[Bar]:
        return await self._run(TickCore.query_bars, feed, symbol, int(timeframe), from_s, to_s, limit, after)

    async def aggregate_bars(
        self, feed: str, symbol: str, timeframe: Timeframe, from_ms: int, to_ms: int, point_raw: int
    ) -> list[Bar]:
        return await self._run(TickCore.aggregate_bars, feed, symbol, timeframe, from_ms, to_ms, point_raw)

    async def symbols(self) -> list[tuple[str, str, int]]:
        return await self._run(TickCore.symbols)

    async def count_ticks(self, feed: str | None = None, symbol: str | None = None) -> int:
        return await self._run(TickCore.count_ticks, feed, symbol)

    async def ping(self) -> bool:
        try:
            return await self._run(TickCore.ping)
        except OperationalError:
            return False
        except Exception as exc:  # a ping reports health; it does not raise
            self._log.warning("tick_store_ping_failed", error=str(exc))
            return False
