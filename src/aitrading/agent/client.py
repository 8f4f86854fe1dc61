"""The agent's WebSocket link to the data bridge: send buffered tick batches until they are acknowledged.

One session: connect with the device credentials on the upgrade request, send `AgentHello`, read
`BridgeWelcome` and drop from the buffer what it says is durable, resend every remaining batch in order,
then stream new ones as the streamer stores them, at most `window_batches` / `window_ticks` unacknowledged
on the wire. A `BatchAck` is cumulative: it removes that batch and every earlier one of its source.
Nothing leaves the buffer except by an ack or the welcome, so a dropped connection loses nothing and a
resent batch that the bridge already stored is only acked again (the bridge de-duplicates by sequence).

Order execution rides the same session (docs/adr/0009-execution-through-agents.md): the hello names the
`accounts` the agent executes for, frames other than acks (trade commands, report acks) go to `on_message`,
`on_connected` runs once a session is up, and `send_message` sends a report or snapshot on it.

Failures are sorted by what helps: a refused device (HTTP 401/403 on the upgrade, close code 4401/4403,
or a `BridgeError` with an auth code) stops the client with `AuthenticationFailed`; everything else
reconnects after an exponential, capped, fully jittered delay (a small loop: neither `stamina` nor
`tenacity` is a dependency).
"""

from __future__ import annotations

import asyncio
import enum
import random
import ssl
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from typing import Any
from urllib.parse import urlparse

import structlog
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, InvalidURI, WebSocketException

from aitrading import __version__
from aitrading.agent._internal import RateMeter, backoff_delay
from aitrading.agent.buffer import DurableBuffer
from aitrading.common import metrics
from aitrading.common.bus.codec import Message, decode, encode
from aitrading.common.clock import Clock
from aitrading.common.errors import ConfigError, OperationalError, TemporaryError
from aitrading.model.wire import PROTOCOL_VERSION, AgentHello, BatchAck, BridgeError, BridgeWelcome

__all__ = ["AUTH_CLOSE_CODES", "AuthenticationFailed", "BridgeClient", "LinkState", "is_auth_error_code"]

AUTH_CLOSE_CODES = frozenset({4401, 4403})
_AUTH_HTTP_STATUS = frozenset({401, 403})
_IDLE_RECHECK_S = 1.0  # the sender looks at the buffer this often even without a wake-up

_log = structlog.get_logger("agent.client")
_batches_sent = metrics.counter("agent_batches_sent", "Tick batches sent to the bridge", ("src",))
_acks = metrics.counter("agent_acks", "Batch acknowledgements received from the bridge", ("src",))
_reconnects = metrics.counter("agent_reconnects", "Reconnections to the bridge after a lost link")
_depth_metric = metrics.gauge("agent_buffer_depth", "Tick batches in the agent buffer waiting for an ack")


def is_auth_error_code(code: str) -> bool:
    """Return whether a `BridgeError.code` means the device was refused (retrying cannot help)."""
    return code in ("unauthenticated", "unauthorized", "forbidden") or code.startswith("auth")


class AuthenticationFailed(OperationalError):
    """The bridge refused this device; fix the device id or key, then restart the agent."""


class _LinkLost(TemporaryError):
    """The session ended in a way a reconnect may cure."""


class LinkState(enum.StrEnum):
    """Where the bridge link is."""

    IDLE = "idle"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    BACKOFF = "backoff"
    AUTH_FAILED = "auth_failed"
    STOPPED = "stopped"


class BridgeClient:
    """Send the buffer's batches of `sources` to the bridge, reconnecting until stopped."""

    def __init__(
        self,
        buffer: DurableBuffer,
        *,
        url: str,
        device_id: str,
        device_key: str,
        sources: Sequence[str],
        clock: Clock,
        window_batches: int = 64,
        window_ticks: int = 200_000,
        backoff_base_s: float = 0.5,
        backoff_cap_s: float = 30.0,
        welcome_timeout_s: float = 10.0,
        open_timeout_s: float = 10.0,
        rng: random.Random | None = None,
        on_welcome: Callable[[BridgeWelcome], None] | None = None,
        on_message: Callable[[Message], None] | None = None,
        symbols: Mapping[str, Mapping[str, int]] | None = None,
        accounts: Mapping[str, str] | None = None,
        on_connected: Callable[[BridgeWelcome], None] | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.url = url
        self._ssl = ssl_context
        self.symbols: dict[str, dict[str, int]] = {f: dict(d) for f, d in (symbols or {}).items()}
        self.accounts: dict[str, str] = dict(accounts or {})
        self.device_id = device_id
        self.sources = tuple(sources)
        self.state = LinkState.IDLE
        self.last_error = ""
        self.reconnects = 0
        self.welcome: BridgeWelcome | None = None
        self.acked: dict[str, int] = {src: buffer.acked(src) for src in self.sources}
        self.sent = RateMeter(clock)
        self.window_batches = window_batches
        self.window_ticks = window_ticks
        self._buffer = buffer
        self._key = device_key
        self._clock = clock
        self._backoff = (backoff_base_s, backoff_cap_s)
        self._welcome_timeout = welcome_timeout_s
        self._open_timeout = open_timeout_s
        self._rng = rng or random.Random()
        self._on_welcome = on_welcome
        self._on_message = on_message
        self._on_connected = on_connected
        self._ws: ClientConnection | None = None
        self._send_lock = asyncio.Lock()  # batches, reports and snapshots share one socket
        self._attempt = 0
        self._wake = asyncio.Event()
        self._acked_event = asyncio.Event()  # cleared only by the sender
        self._drained = asyncio.Event()  # cleared only by `drain`
        self._stopping = asyncio.Event()
        self._inflight: dict[str, deque[tuple[int, int]]] = {src: deque() for src in self.sources}
        self._warn_plaintext()

    # -- public ------------------------------------------------------------------------------------

    def notify(self, src: str = "", seq: int = 0) -> None:
        """Tell the sender a new batch is in the buffer (the streamer's `on_batch`)."""
        self._wake.set()
        self._depth_gauge()

    async def run(self) -> None:
        """Keep a session up until `stop()`; raise `AuthenticationFailed` if the bridge refuses the device."""
        while not self._stopping.is_set():
            self.state = LinkState.CONNECTING
            try:
                await self._session()
            except AuthenticationFailed as exc:
                self.state = LinkState.AUTH_FAILED
                self.last_error = str(exc)
                _log.error("bridge_refused_device", device_id=self.device_id, error=str(exc))
                raise
            except (OSError, TimeoutError, WebSocketException, _LinkLost) as exc:
                self.last_error = _describe(exc)
                _log.warning("bridge_link_lost", error=self.last_error, attempt=self._attempt)
            if self._stopping.is_set():
                break
            self.state = LinkState.BACKOFF
            delay = backoff_delay(self._attempt, base=self._backoff[0], cap=self._backoff[1], rng=self._rng)
            self._attempt += 1
            self.reconnects += 1
            _reconnects.inc()
            await self._sleep_unless_stopped(delay)
        self.state = LinkState.STOPPED

    async def stop(self) -> None:
        """End the session with a normal close; unacknowledged batches stay in the buffer."""
        self._stopping.set()
        self._wake.set()

    async def drain(self, timeout_s: float) -> bool:
        """Wait up to `timeout_s` (real time) for the buffer to empty; return whether it did."""

        async def empty() -> None:
            while True:
                self._drained.clear()
                if await asyncio.to_thread(self._depth) == 0:
                    return
                await self._drained.wait()

        try:
            await asyncio.wait_for(empty(), timeout_s)
        except TimeoutError:
            return False
        return True

    async def send_message(self, msg: Message) -> bool:
        """Send `msg` on the current session; return False if there is none or it dropped meanwhile."""
        ws = self._ws
        if ws is None or self.state is not LinkState.CONNECTED:
            return False
        try:
            async with self._send_lock:
                await ws.send(encode(msg))
        except (ConnectionClosed, OSError):
            return False
        return True

    @property
    def inflight(self) -> int:
        """Batches sent on the current connection and not yet acknowledged."""
        return sum(len(q) for q in self._inflight.values())

    # -- one session -------------------------------------------------------------------------------

    async def _session(self) -> None:
        headers = {"X-Device-Id": self.device_id, "Authorization": f"Bearer {self._key}"}
        try:
            if self._ssl is not None and self.url.startswith("wss:"):
                ws = await connect(
                    self.url, additional_headers=headers, open_timeout=self._open_timeout, ssl=self._ssl
                )
            else:
                ws = await connect(self.url, additional_headers=headers, open_timeout=self._open_timeout)
        except InvalidStatus as exc:
            status = exc.response.status_code
            if status in _AUTH_HTTP_STATUS:
                raise AuthenticationFailed(self._refused(f"HTTP {status}")) from None
            raise
        except InvalidURI as exc:
            raise ConfigError(f"agent.bridge_url is not a WebSocket URL: {exc}") from None
        try:
            await self._handshake(ws)
            self.state = LinkState.CONNECTED
            _log.info("bridge_connected", url=self.url, sources=list(self.sources))
            for q in self._inflight.values():
                q.clear()
            self._ws = ws
            if self._on_connected is not None and self.welcome is not None:
                self._on_connected(self.welcome)
            tasks = [
                asyncio.create_task(self._receive(ws), name="agent-receive"),
                asyncio.create_task(self._send(ws), name="agent-send"),
                asyncio.create_task(self._stopping.wait(), name="agent-stop"),
            ]
            try:
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
            if self._stopping.is_set():
                return
            errors = [e for t in done if not t.cancelled() and (e := t.exception()) is not None]
            self._raise_for_close(ws)
            auth = [e for e in errors if isinstance(e, AuthenticationFailed)]
            raise auth[0] if auth else (errors[0] if errors else _LinkLost("the bridge ended the session"))
        except ConnectionClosed:
            self._raise_for_close(ws)
            raise
        finally:
            self._ws = None
            await ws.close()
            self._depth_gauge()

    async def _handshake(self, ws: ClientConnection) -> None:
        await ws.send(
            encode(
                AgentHello(
                    device_id=self.device_id,
                    agent_version=__version__,
                    sources=list(self.sources),
                    symbols={feed: dict(digits) for feed, digits in self.symbols.items()},
                    accounts=dict(self.accounts),
                )
            )
        )
        async with asyncio.timeout(self._welcome_timeout):
            first = _decode(await ws.recv())
        if isinstance(first, BridgeError):
            self._raise_bridge_error(first)
        if not isinstance(first, BridgeWelcome):
            raise _LinkLost(f"expected BridgeWelcome, got {type(first).__name__}")
        if first.protocol != PROTOCOL_VERSION:
            _log.warning("bridge_protocol_differs", bridge=first.protocol, agent=PROTOCOL_VERSION)
        for src in self.sources:
            seq = first.durable.get(src, 0)
            if seq < self.acked.get(src, 0):
                # Acked batches are gone from this buffer; only the bridge's operator can restore them.
                _log.error("bridge_lost_acked_batches", src=src, bridge_durable=seq, acked=self.acked[src])
            if seq > 0:
                dropped = await asyncio.to_thread(self._buffer.drop_through, src, seq)
                self.acked[src] = max(self.acked.get(src, 0), seq)
                if dropped:
                    _log.info("dropped_durable_batches", src=src, through=seq, batches=dropped)
        self._attempt = 0
        self.welcome = first
        if self._on_welcome is not None:
            self._on_welcome(first)
        self._drained.set()
        self._depth_gauge()

    async def _send(self, ws: ClientConnection) -> None:
        sent_upto = dict.fromkeys(self.sources, 0)  # resend everything unacked, in order, then go on
        turn = 0
        while True:
            self._wake.clear()
            progressed = False
            turn = (turn + 1) % len(self.sources)  # rotate so one source's backlog cannot starve another
            for src in self.sources[turn:] + self.sources[:turn]:
                room = self.window_batches - self.inflight
                if room <= 0 or self._inflight_ticks() >= self.window_ticks:
                    break
                batches = await asyncio.to_thread(self._buffer.pending, src, after=sent_upto[src], limit=room)
                for batch in batches:
                    async with self._send_lock:
                        await ws.send(batch.frame)
                    sent_upto[src] = batch.seq
                    self._inflight[src].append((batch.seq, batch.ticks))
                    self.sent.add(batch.ticks)
                    _batches_sent.labels(src).inc()
                    progressed = True
            if not progressed:
                self._acked_event.clear()
                waits = [
                    asyncio.ensure_future(self._wake.wait()),
                    asyncio.ensure_future(self._acked_event.wait()),
                ]
                try:
                    await asyncio.wait(waits, timeout=_IDLE_RECHECK_S, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for w in waits:
                        w.cancel()

    async def _receive(self, ws: ClientConnection) -> None:
        async for raw in ws:
            msg = _decode(raw)
            if isinstance(msg, BatchAck):
                await self._apply_ack(msg)
            elif isinstance(msg, BridgeError):
                self._raise_bridge_error(msg)
            elif msg is not None and self._on_message is not None:
                self._on_message(msg)
        raise _LinkLost("the bridge closed the connection")

    async def _apply_ack(self, ack: BatchAck) -> None:
        if ack.src not in self._inflight:
            _log.warning("ack_for_unknown_source", src=ack.src, seq=ack.seq)
            return
        await asyncio.to_thread(self._buffer.ack, ack.src, ack.seq)
        queue = self._inflight[ack.src]
        while queue and queue[0][0] <= ack.seq:
            queue.popleft()
        self.acked[ack.src] = max(self.acked.get(ack.src, 0), ack.seq)
        _acks.labels(ack.src).inc()
        self._acked_event.set()
        self._drained.set()
        self._depth_gauge()

    # -- helpers -----------------------------------------------------------------------------------

    def _raise_bridge_error(self, err: BridgeError) -> None:
        self.last_error = f"bridge error {err.code}: {err.reason}"
        if is_auth_error_code(err.code):
            raise AuthenticationFailed(self._refused(f"{err.code}: {err.reason}"))
        raise _LinkLost(self.last_error)

    def _raise_for_close(self, ws: ClientConnection) -> None:
        if ws.close_code in AUTH_CLOSE_CODES:
            raise AuthenticationFailed(self._refused(f"close code {ws.close_code} {ws.close_reason or ''}"))

    def _refused(self, why: str) -> str:
        return (
            f"the bridge at {self.url} refused device {self.device_id!r} ({why.strip()}); "
            "check the device id and key (aitrading agent credentials), then restart the agent"
        )

    def _inflight_ticks(self) -> int:
        return sum(n for q in self._inflight.values() for _, n in q)

    def _depth(self) -> int:
        return sum(self._buffer.depth(src) for src in self.sources)

    def _depth_gauge(self) -> None:
        with suppress(Exception):  # a closed buffer during shutdown is not worth an error
            _depth_metric.set(self._buffer.depth())

    async def _sleep_unless_stopped(self, seconds: float) -> None:
        sleeper = asyncio.ensure_future(self._clock.sleep(seconds))
        stopper = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({sleeper, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            stopper.cancel()

    def _warn_plaintext(self) -> None:
        parsed = urlparse(self.url)
        if parsed.scheme == "ws" and parsed.hostname not in ("127.0.0.1", "localhost", "::1"):
            _log.warning(
                "bridge_url_not_tls", url=self.url, hint="the device key travels in clear; use wss://"
            )


def _decode(raw: Any) -> Message | None:
    if isinstance(raw, str):
        _log.warning("bridge_sent_text_frame")
        return None
    try:
        return decode(raw)
    except ValueError as exc:
        _log.warning("bridge_frame_undecodable", error=str(exc))
        return None


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if isinstance(exc, _LinkLost) else f"{type(exc).__name__}: {text}"
