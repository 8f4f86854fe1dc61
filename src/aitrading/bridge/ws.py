"""The agent WebSocket (`/ws/agent`): authentication, hello/welcome, batches in, acks out.

The same connection carries order execution (`bridge.orders`): trade commands out to the agent, its order
reports (acknowledged once on the bus) and account snapshots in.

Anything hostile closes only its own connection, with a reason: bad or missing device key (4401),
a source the device does not own (4403), a frame that does not decode or a text frame (1003),
a batch over the size limit (1009; uvicorn enforces the byte limit itself), a protocol breach (1008),
an account another device's agent already serves (4409). A report or snapshot for an account the
connection did not declare is rejected and counted, like a bad tick, and the connection goes on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import msgspec
import structlog
from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from starlette.websockets import WebSocketState

from aitrading.bridge.orders import CONFLICT_CLOSE_CODE, AccountConflict, AgentLink, OrderRouter
from aitrading.bridge.pipeline import IngestPipeline
from aitrading.bridge.symbols import SymbolRegistry
from aitrading.common import metrics
from aitrading.common.bus import decode, encode
from aitrading.common.errors import BadInputError
from aitrading.common.logging import correlation_id
from aitrading.model.validation import TickValidator
from aitrading.model.wire import (
    AccountSnapshot,
    AgentHello,
    BatchAck,
    BridgeError,
    BridgeWelcome,
    OrderReport,
    SymbolSpecs,
    TickBatchFrame,
)

__all__ = ["AgentEndpoint", "DeviceAuth"]

_log = structlog.get_logger("bridge.ws")

DeviceAuth = Callable[[str, str], Awaitable[str | None]]
"""Authenticate (device_id, key) → the device's tenant id, or None."""

CONNECTIONS = metrics.gauge("bridge_agent_connections", "Open agent WebSocket connections")
CLOSED = metrics.counter("bridge_agent_closed", "Agent connections closed by the bridge", ("reason",))

HELLO_TIMEOUT_S = 10.0


class _Close(Exception):
    def __init__(self, code: int, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.kind = kind
        self.reason = reason


class AgentEndpoint:
    """Serves agent connections for one bridge."""

    def __init__(
        self,
        pipeline: IngestPipeline,
        validator: TickValidator,
        authenticate: DeviceAuth,
        registry: SymbolRegistry,
        *,
        max_batch_ticks: int,
        max_frame_bytes: int,
        orders: OrderRouter | None = None,
    ) -> None:
        self._orders = orders
        self._pipeline = pipeline
        self._validator = validator
        self._authenticate = authenticate
        self._registry = registry
        self._max_batch = max_batch_ticks
        self._max_frame = max_frame_bytes
        self.router = APIRouter()
        self.router.add_api_websocket_route("/ws/agent", self.handle)

    async def handle(self, ws: WebSocket) -> None:
        """Serve one agent connection until it closes."""
        await ws.accept()
        CONNECTIONS.inc()
        link: AgentLink | None = None
        conn = _Conn(ws)
        with correlation_id() as cid:
            try:
                device, tenant = await self._auth(ws)
                sources, link = await self._hello(conn, device, tenant, cid)
                if link is not None and self._orders is not None:
                    await self._orders.open(link)
                await self._stream(conn, sources, link)
            except _Close as close:
                CLOSED.labels(close.kind).inc()
                _log.info("agent_closed", kind=close.kind, reason=close.reason)
                await self._close(ws, close)
            except WebSocketDisconnect:
                _log.info("agent_disconnected")
            except Exception:
                CLOSED.labels("internal").inc()
                _log.exception("agent_connection_failed")
                await self._close(ws, _Close(1011, "internal", "internal error"))
            finally:
                if link is not None and self._orders is not None:
                    await self._orders.release(link)
                CONNECTIONS.dec()

    async def _auth(self, ws: WebSocket) -> tuple[str, str]:
        device_id = ws.headers.get("x-device-id", "")
        auth = ws.headers.get("authorization", "")
        scheme, _, key = auth.partition(" ")
        if not device_id or scheme.lower() != "bearer" or not key:
            raise _Close(4401, "unauthenticated", "missing X-Device-Id or Authorization: Bearer <device key>")
        tenant = await self._authenticate(device_id, key)
        if tenant is None:
            raise _Close(4401, "unauthenticated", "unknown device or bad device key")
        structlog.contextvars.bind_contextvars(device=device_id)
        return device_id, tenant

    async def _hello(
        self, conn: _Conn, device: str, tenant: str, session: str
    ) -> tuple[set[str], AgentLink | None]:
        ws = conn.ws
        try:
            raw = await asyncio.wait_for(ws.receive_bytes(), HELLO_TIMEOUT_S)
            hello = decode(raw)
        except TimeoutError:
            raise _Close(1008, "protocol", "no hello within 10 s") from None
        except (KeyError, msgspec.DecodeError):
            raise _Close(1003, "malformed", "first frame is not an AgentHello") from None
        if not isinstance(hello, AgentHello) or hello.device_id != device:
            raise _Close(1008, "protocol", "first frame must be an AgentHello of the authenticated device")
        foreign = [s for s in hello.sources if not s.startswith(device + "/")]
        if foreign:
            raise _Close(4403, "forbidden", f"sources not owned by device {device}: {', '.join(foreign[:3])}")
        feeds = {s.split("/", 1)[1] for s in hello.sources}
        link = self._claim(conn, device, tenant, hello.accounts) if hello.accounts else None
        for feed, symbols in hello.symbols.items():
            if feed in feeds:
                self._registry.register(feed, symbols)
        welcome = BridgeWelcome(
            session=session,
            durable={s: self._pipeline.durable(s) for s in hello.sources},
            max_batch_ticks=self._max_batch,
            max_frame_bytes=self._max_frame,
            tenant=tenant,
        )
        try:
            await conn.send(encode(welcome))
        except BaseException:
            if link is not None and self._orders is not None:
                await self._orders.release(link)  # claimed, never opened: give the accounts back
            raise
        return set(hello.sources), link

    def _claim(self, conn: _Conn, device: str, tenant: str, accounts: dict[str, str]) -> AgentLink:
        if self._orders is None:
            raise _Close(1008, "protocol", "this bridge does not route orders; send no accounts")

        async def close(code: int, kind: str, reason: str) -> None:
            await self._close(conn.ws, _Close(code, kind, reason), conn)

        try:
            return self._orders.claim(tenant, device, accounts, conn.send, close)
        except AccountConflict as exc:
            raise _Close(CONFLICT_CLOSE_CODE, "conflict", str(exc)) from None
        except BadInputError as exc:
            raise _Close(1008, "protocol", str(exc)) from None

    async def _stream(self, conn: _Conn, sources: set[str], link: AgentLink | None) -> None:
        ws = conn.ws

        async def ack(src: str, seq: int, accepted: int, rejected: int, duplicate: bool) -> None:
            if ws.application_state is WebSocketState.CONNECTED:
                await conn.send(
                    encode(
                        BatchAck(src=src, seq=seq, accepted=accepted, rejected=rejected, duplicate=duplicate)
                    )
                )

        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            raw = message.get("bytes")
            if raw is None:
                raise _Close(1003, "malformed", "text frames are not part of the protocol; send msgpack")
            try:
                frame = decode(raw)
            except (KeyError, msgspec.DecodeError, ValueError) as exc:
                raise _Close(1003, "malformed", f"frame does not decode: {str(exc)[:120]}") from None
            if isinstance(frame, OrderReport | AccountSnapshot | SymbolSpecs):
                await self._order_frame(link, frame)
                continue
            if not isinstance(frame, TickBatchFrame):
                raise _Close(1008, "protocol", f"unexpected {type(frame).__name__} frame")
            if frame.src not in sources:
                raise _Close(4403, "forbidden", f"source {frame.src!r} was not announced in the hello")
            if frame.seq <= 0:
                raise _Close(1008, "protocol", "sequence numbers start at 1")
            if len(frame.ticks) > self._max_batch:
                raise _Close(1009, "too_big", f"batch of {len(frame.ticks)} ticks exceeds {self._max_batch}")
            accepted, rejected = self._validator.validate(frame.feed, frame.ticks)
            await self._pipeline.submit(frame.src, frame.seq, frame.feed, accepted, rejected, ack)

    async def _order_frame(
        self, link: AgentLink | None, frame: OrderReport | AccountSnapshot | SymbolSpecs
    ) -> None:
        if self._orders is None:
            raise _Close(1008, "protocol", "this bridge does not route orders")
        if link is None:  # the connection declared no accounts
            kind = {OrderReport: "report", AccountSnapshot: "snapshot"}.get(type(frame), "specs")
            self._orders.reject(kind, frame.tenant, frame.account)
        elif isinstance(frame, OrderReport):
            await self._orders.report(link, frame)
        elif isinstance(frame, SymbolSpecs):
            await self._orders.specs(link, frame)
        else:
            await self._orders.snapshot(link, frame)

    @staticmethod
    async def _close(ws: WebSocket, close: _Close, conn: _Conn | None = None) -> None:
        if ws.application_state is not WebSocketState.CONNECTED:
            return
        try:
            error = encode(BridgeError(code=close.kind, reason=close.reason))
            await (conn.send(error) if conn is not None else ws.send_bytes(error))
            await ws.close(code=close.code, reason=close.reason[:120])
        except (RuntimeError, WebSocketDisconnect, OSError):
            pass  # the peer is already gone


class _Conn:
    """One agent WebSocket and the lock that keeps acks, commands and errors from interleaving."""

    def __init__(self, ws: WebSocket) -> None:
        self.ws = ws
        self._lock = asyncio.Lock()

    async def send(self, frame: bytes) -> None:
        async with self._lock:
            await self.ws.send_bytes(frame)
