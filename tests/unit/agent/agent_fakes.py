"""Test doubles for the agent: an MT5-like terminal and a tiny bridge over real WebSockets."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from types import SimpleNamespace
from typing import Any, Literal

import numpy as np
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from aitrading.common.bus.codec import decode, encode
from aitrading.model.market import Tick
from aitrading.model.wire import AgentHello, BatchAck, BridgeError, BridgeWelcome, TickBatchFrame

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
TICK_DTYPE = np.dtype(
    [
        ("time", "<i8"),
        ("bid", "<f8"),
        ("ask", "<f8"),
        ("last", "<f8"),
        ("volume", "<u8"),
        ("time_msc", "<i8"),
        ("flags", "<u4"),
        ("volume_real", "<f8"),
    ]
)


class FakeTerminal:
    """The tick functions of the `MetaTrader5` module over ticks a test makes visible with `push`.

    `truncate_to_seconds` mimics a terminal that reads `date_from` only to the second.
    """

    def __init__(self, symbols: Iterable[str] = ("EURUSD",), *, truncate_to_seconds: bool = False) -> None:
        self.ticks: dict[str, list[tuple[Any, ...]]] = {s: [] for s in symbols}
        self.truncate = truncate_to_seconds
        self.fail = False
        self.calls: list[tuple[str, int, int]] = []

    def push(
        self,
        symbol: str,
        time_msc: int,
        bid: float,
        ask: float,
        last: float = 0.0,
        volume_real: float = 0.0,
        flags: int = 6,
    ) -> None:
        rows = self.ticks[symbol]
        assert not rows or rows[-1][5] <= time_msc, "MT5 keeps ticks in time order"
        rows.append((time_msc // 1000, bid, ask, last, int(volume_real), time_msc, flags, volume_real))

    def copy_ticks_from(self, symbol: str, date_from: datetime | int, count: int, flags: int) -> Any:
        if self.fail:
            return None
        if isinstance(date_from, datetime):
            assert date_from.tzinfo is not None, "date_from must be aware UTC"
            ms = (date_from - EPOCH) // timedelta(milliseconds=1)
        else:
            ms = int(date_from) * 1000
        self.calls.append((symbol, ms, count))
        if self.truncate:
            ms -= ms % 1000
        rows = [r for r in self.ticks[symbol] if r[5] >= ms][:count]
        return np.array(rows, dtype=TICK_DTYPE)

    def symbols_get(self, *args: Any, **kwargs: Any) -> Any:
        return tuple(SimpleNamespace(name=s, visible=True) for s in self.ticks)

    def symbol_info_tick(self, symbol: str) -> Any:
        rows = self.ticks.get(symbol)
        return SimpleNamespace(**dict(zip(TICK_DTYPE.names or (), rows[-1], strict=True))) if rows else None

    def last_error(self) -> tuple[int, str]:
        return (-1, "Terminal: Call failed") if self.fail else (1, "Success")


Action = Literal["ack", "store", "hold", "drop"]


class FakeBridge:
    """Plays the data bridge: checks the device key, welcomes, stores batches once by seq, acks.

    `on_frame(connection_no, frame)` decides per frame: `ack` (store and ack), `store` (store, no ack),
    `hold` (neither), `drop` (abort the TCP connection without storing).
    """

    def __init__(self, device_id: str = "dev-1", key: str = "key-1") -> None:
        self.device_id = device_id
        self.key = key
        self.stored: dict[tuple[str, int], TickBatchFrame] = {}
        self.store_count: Counter[tuple[str, int]] = Counter()
        self.received: list[tuple[int, str, int]] = []
        self.hellos: list[AgentHello] = []
        self.connections = 0
        self.on_frame: Callable[[int, TickBatchFrame], Action] | None = None
        self.close_with: tuple[int, str] | None = None
        self.first_error: BridgeError | None = None
        self.http_status: HTTPStatus | None = None
        self.max_batch_ticks = 10_000
        self.open: set[ServerConnection] = set()
        self._server: Server | None = None
        self.url = ""

    async def start(self, port: int = 0) -> FakeBridge:
        self._server = await serve(self._handle, "127.0.0.1", port, process_request=self._http)
        port = next(iter(self._server.sockets)).getsockname()[1]
        self.url = f"ws://127.0.0.1:{port}/ws/agent"
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def durable(self, src: str) -> int:
        seq = 0
        while (src, seq + 1) in self.stored:
            seq += 1
        return seq

    def ticks(self, src: str) -> list[Tick]:
        return [t for (s, _), f in sorted(self.stored.items()) if s == src for t in f.ticks]

    async def ack(self, ws: ServerConnection, frame: TickBatchFrame, duplicate: bool = False) -> None:
        n = len(frame.ticks)
        await ws.send(
            encode(BatchAck(src=frame.src, seq=frame.seq, accepted=n, rejected=0, duplicate=duplicate))
        )

    def _http(self, connection: ServerConnection, request: Request) -> Response | None:
        if self.http_status is not None:
            return connection.respond(self.http_status, "refused\n")
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        self.connections += 1
        conn = self.connections
        self.open.add(ws)
        try:
            await self._serve(ws, conn)
        finally:
            self.open.discard(ws)

    async def _serve(self, ws: ServerConnection, conn: int) -> None:
        headers = ws.request.headers if ws.request is not None else {}
        if (
            headers.get("X-Device-Id") != self.device_id
            or headers.get("Authorization") != f"Bearer {self.key}"
        ):
            await ws.send(encode(BridgeError(code="unauthenticated", reason="unknown device or bad key")))
            await ws.close(4401, "unknown device or bad key")
            return
        if self.close_with is not None:
            await ws.close(*self.close_with)
            return
        first = await ws.recv()
        assert isinstance(first, bytes)
        hello = decode(first)
        assert isinstance(hello, AgentHello)
        self.hellos.append(hello)
        if self.first_error is not None:
            await ws.send(encode(self.first_error))
            await ws.close(1008, self.first_error.reason)
            return
        durable = {s: self.durable(s) for s in hello.sources}
        await ws.send(
            encode(
                BridgeWelcome(
                    session=f"s{conn}",
                    durable=durable,
                    max_batch_ticks=self.max_batch_ticks,
                    max_frame_bytes=1 << 20,
                )
            )
        )
        async for raw in ws:
            assert isinstance(raw, bytes)
            frame = decode(raw)
            assert isinstance(frame, TickBatchFrame)
            self.received.append((conn, frame.src, frame.seq))
            action = self.on_frame(conn, frame) if self.on_frame is not None else "ack"
            if action == "drop":
                ws.transport.abort()
                return
            if action == "hold":
                continue
            key = (frame.src, frame.seq)
            duplicate = key in self.stored
            if not duplicate:
                self.stored[key] = frame
                self.store_count[key] += 1
            if action == "ack":
                await self.ack(ws, frame, duplicate)


async def eventually(predicate: Callable[[], bool], timeout: float = 5.0, what: str = "condition") -> None:
    """Wait (real time) until `predicate()` holds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)
