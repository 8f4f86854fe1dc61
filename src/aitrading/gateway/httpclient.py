"""A lean HTTP/1.1 client for the gateway's calls to services in split mode: pooled keep-alive connections.

httpx cost the split-mode gateway about 1 ms of CPU per proxied call (profiled: request and response
objects, httpcore's connection pool, anyio), several times the rest of the gateway's work. The gateway
needs far less of a client: one origin per pool, a request whose body is already whole, and an answer
streamed into a `ResponseSink`. So each connection is an asyncio protocol feeding httptools' response
parser (llhttp, the parser uvicorn uses too), and a pool keeps at most `max_connections` of them per
upstream, reusing idle ones newest first.

An idle connection is dropped after `keepalive_s` (4 s, under uvicorn's 5 s), so the gateway rarely sends on
a connection the server is closing. When that race happens anyway — the connection ends before any byte of
an answer — an idempotent request (GET, HEAD, OPTIONS, or with an `Idempotency-Key`) is sent once more on a
fresh connection, as RFC 9112 §9.3.1.1 allows; any other request fails as unreachable.
"""

from __future__ import annotations

import asyncio
import ssl
import time
import urllib.parse
from collections import deque

import httptools

__all__ = ["ConnectError", "HttpConnectionPool", "HttpExchange"]

Headers = list[tuple[bytes, bytes]]

_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS"})
_MAX_BUFFERED = 256 * 1024  # read no further ahead of a slow client than this
_OWN_HEADERS = frozenset({b"host", b"connection", b"expect", b"content-length", b"transfer-encoding"})


class ConnectError(ConnectionError):
    """The upstream could not be reached: connection refused, name not resolved, TLS failed."""


class _Closed(ConnectionError):
    """The connection ended before the answer did."""


class HttpExchange:
    """One request's answer as it arrives: its head once, then its body in pieces."""

    __slots__ = ("_conn", "body", "complete", "error", "head", "head_only", "received", "waiter")

    def __init__(self, conn: _Connection, head_only: bool) -> None:
        self._conn = conn
        self.head: asyncio.Future[tuple[int, Headers]] = asyncio.get_running_loop().create_future()
        self.head_only = head_only
        self.body: list[bytes] = []
        self.complete = False
        self.received = False
        self.error: BaseException | None = None
        self.waiter: asyncio.Future[None] | None = None

    def wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    async def read(self, timeout_s: float) -> tuple[bytes, bool]:
        """Return the body that arrived (waiting up to `timeout_s` for some) and whether more follows."""
        while not self.body and not self.complete:
            if self.error is not None:
                raise self.error
            self.waiter = asyncio.get_running_loop().create_future()
            async with asyncio.timeout(timeout_s):
                await self.waiter
            self.waiter = None
        data = b"".join(self.body) if len(self.body) != 1 else self.body[0]
        self.body.clear()
        self._conn.drained()
        return data, not self.complete


class _Connection(asyncio.Protocol):
    """One keep-alive connection to the upstream, answering one exchange at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.exchange: HttpExchange | None = None
        self.closed = False
        self.reusable = True
        self.paused = False
        self.buffered = 0
        self.idle_since = 0.0
        self._status = 0
        self._headers: Headers = []
        self._until_eof = False

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's transports are not subclasses

    def data_received(self, data: bytes) -> None:
        exchange = self.exchange
        if exchange is None:  # nothing asked: a server talking out of turn cannot be trusted further
            self.close()
            return
        exchange.received = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(_Closed(f"malformed answer: {exc}"))
            self.close()

    def eof_received(self) -> bool:
        return False  # let the transport close; connection_lost reports it

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.reusable = False
        exchange = self.exchange
        if exc is None and self._until_eof and exchange is not None and not exchange.complete:
            exchange.complete = True  # a body without length or chunks ends where the connection does
            exchange.wake()
            return
        self._fail(_Closed(f"connection closed by the upstream{f': {exc}' if exc else ''}"))

    # httptools callbacks
    def on_message_begin(self) -> None:
        self._headers = []

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        exchange = self.exchange
        status = self.parser.get_status_code()
        if exchange is None or status < 200:
            return  # an interim answer (100 Continue): the real one follows
        self._status = status
        self._until_eof = status not in (204, 304) and not any(
            name in (b"content-length", b"transfer-encoding") for name, _ in self._headers
        )
        if not exchange.head.done():
            exchange.head.set_result((status, self._headers))
        if exchange.head_only:  # a HEAD answer has no body whatever Content-Length says
            exchange.complete = True
            self.reusable = False  # the parser would wait for that body; start afresh next time
            exchange.wake()

    def on_body(self, body: bytes) -> None:
        exchange = self.exchange
        if exchange is None or exchange.complete or self._status == 0:
            return
        exchange.body.append(body)
        self.buffered += len(body)
        if self.buffered > _MAX_BUFFERED and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()
        exchange.wake()

    def on_message_complete(self) -> None:
        exchange = self.exchange
        if exchange is None or self._status == 0:
            return  # the end of an interim answer
        exchange.complete = True
        if not self.parser.should_keep_alive():
            self.reusable = False
        exchange.wake()

    # the pool's side
    def send(self, data: bytes, head_only: bool) -> HttpExchange:
        assert self.transport is not None
        self.exchange = exchange = HttpExchange(self, head_only)
        self._status = 0
        self._until_eof = False
        self.transport.write(data)
        return exchange

    def drained(self) -> None:
        self.buffered = 0
        if self.paused and self.transport is not None and not self.closed:
            self.paused = False
            self.transport.resume_reading()

    def finish(self) -> None:
        """End the current exchange; a connection whose answer was not read to the end cannot be reused."""
        exchange, self.exchange = self.exchange, None
        if exchange is None or not exchange.complete:
            self.reusable = False

    def close(self) -> None:
        self.reusable = False
        if self.transport is not None:
            self.transport.close()

    def _fail(self, error: BaseException) -> None:
        exchange = self.exchange
        if exchange is None or exchange.complete:
            return
        exchange.error = error
        if not exchange.head.done():
            exchange.head.set_exception(error)
            exchange.head.exception()  # marked retrieved: the caller may have stopped waiting (timeout)
        exchange.wake()


class HttpConnectionPool:
    """At most `max_connections` keep-alive HTTP/1.1 connections to one origin (`http://` or `https://`)."""

    def __init__(
        self,
        url: str,
        *,
        max_connections: int = 100,
        verify: ssl.SSLContext | bool = True,
        keepalive_s: float = 4.0,
    ) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"an upstream URL must be http:// or https:// with a host, got {url!r}")
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self._host_header = parts.netloc.encode()
        self._ssl: ssl.SSLContext | None = None
        if parts.scheme == "https":
            if isinstance(verify, ssl.SSLContext):
                self._ssl = verify
            elif verify:
                self._ssl = ssl.create_default_context()
            else:
                self._ssl = ssl.create_default_context()
                self._ssl.check_hostname = False
                self._ssl.verify_mode = ssl.CERT_NONE
        self._slots = asyncio.Semaphore(max_connections)
        self._idle: deque[_Connection] = deque()
        self._keepalive_s = keepalive_s
        self._closed = False
        self.opened = 0
        """Connections opened so far (a figure for tests and diagnostics)."""

    async def request(
        self, method: str, target: bytes, headers: Headers, body: bytes
    ) -> tuple[_Connection, HttpExchange]:
        """Send a request; return its connection (give it back with `release`) and its exchange.

        The caller bounds the wait (`asyncio.timeout`) and awaits `exchange.head`, which raises
        `ConnectionError` when the connection ends first. Raises `ConnectError` when no connection opens.
        """
        data = self._serialize(method, target, headers, body)
        head_only = method == "HEAD"
        await self._slots.acquire()
        conn: _Connection | None = None
        try:
            conn, reused = await self._connection()
            exchange = conn.send(data, head_only)
            if reused and (method in _IDEMPOTENT or any(k == b"idempotency-key" for k, _ in headers)):
                try:
                    await asyncio.shield(exchange.head)
                except _Closed:
                    if exchange.received:
                        raise
                    conn.close()  # the server closed the idle connection as we sent: once more, afresh
                    conn.finish()
                    conn = await self._open()
                    exchange = conn.send(data, head_only)
        except BaseException:
            if conn is not None:
                conn.close()
            self._slots.release()
            raise
        return conn, exchange

    def release(self, conn: _Connection) -> None:
        """Take a connection back after its exchange: kept when its answer was read to the end."""
        conn.finish()
        if conn.reusable and not conn.closed and not self._closed:
            conn.idle_since = time.monotonic()
            self._idle.append(conn)
        else:
            conn.close()
        self._slots.release()

    async def close(self) -> None:
        """Close every idle connection (those in use close when released)."""
        self._closed = True
        while self._idle:
            self._idle.pop().close()

    async def _connection(self) -> tuple[_Connection, bool]:
        stale_before = time.monotonic() - self._keepalive_s
        while self._idle:
            conn = self._idle.pop()
            transport = conn.transport
            if conn.closed or transport is None or transport.is_closing() or conn.idle_since < stale_before:
                conn.close()
                continue
            return conn, True
        return await self._open(), False

    async def _open(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            _, conn = await loop.create_connection(
                _Connection,
                self.host,
                self.port,
                ssl=self._ssl,
                server_hostname=self.host if self._ssl is not None else None,
            )
        except (OSError, ssl.SSLError) as exc:
            raise ConnectError(str(exc) or type(exc).__name__) from exc
        self.opened += 1
        return conn

    def _serialize(self, method: str, target: bytes, headers: Headers, body: bytes) -> bytes:
        out = [method.encode(), b" ", target, b" HTTP/1.1\r\nhost: ", self._host_header, b"\r\n"]
        for name, value in headers:
            if name not in _OWN_HEADERS:
                out += (name, b": ", value, b"\r\n")
        if body or method not in _IDEMPOTENT:
            out += (b"content-length: ", str(len(body)).encode(), b"\r\n")
        out += (b"\r\n", body)
        return b"".join(out)
