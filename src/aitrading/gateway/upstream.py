"""How the gateway reaches a service: in process (all-in-one) or over HTTP (split), and as whom.

Both transports stream the answer through a `ResponseSink`: the sink sees the status and headers first and
says whether to pass the body on (the proxy swallows a 502/503/504 it is going to retry). In process the
service's ASGI app is called directly with a fresh scope, which is what `httpx.ASGITransport` does minus
building httpx request and response objects (the gateway's largest cost when profiled); over HTTP the
gateway's own lean client (`gateway.httpclient`) keeps a pool of keep-alive connections per service.

Identity travels as a short-lived service token minted by the gateway for the caller's principal, never the
caller's own credential. Tokens are cached per principal and reused for half their life, so a token
reaching an upstream always has at least half of it left and the gateway signs about once per principal
per `ttl_s / 2`, not once per request.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

from aitrading.common import metrics
from aitrading.common.auth import Principal, TokenService
from aitrading.common.clock import Clock
from aitrading.gateway.breaker import Breaker, Bulkhead
from aitrading.gateway.httpclient import ConnectError, HttpConnectionPool

__all__ = [
    "Failure",
    "HttpTransport",
    "InProcessTransport",
    "OutgoingRequest",
    "ResponseSink",
    "Transport",
    "Upstream",
    "UpstreamTokens",
]

_NS = 1_000_000_000

Headers = list[tuple[bytes, bytes]]
ASGIApp = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Failure:
    """No answer came: `timeout` or `unreachable` (retryable), `error` (the upstream app raised)."""

    kind: str
    detail: str


@dataclass(frozen=True, slots=True)
class OutgoingRequest:
    """The request as the upstream gets it: its own path under `/api/v1`, filtered headers, whole body."""

    method: str
    path: str
    raw_path: bytes
    query_string: bytes
    headers: Headers
    body: bytes
    client: tuple[str, int] | None
    scheme: str
    http_version: str
    receive: Callable[[], Awaitable[dict[str, Any]]]
    """The client connection's `receive`, consulted after the body (it reports the client leaving)."""


class ResponseSink(Protocol):
    """Takes an answer: `start` says whether the body is wanted, then `body` gets it piece by piece."""

    async def start(self, status: int, headers: Headers) -> bool: ...

    async def body(self, chunk: bytes, more: bool) -> None: ...


class Transport(Protocol):
    """Sends one request to an upstream and streams the answer into a sink."""

    mode: str
    url: str

    async def call(self, request: OutgoingRequest, timeout_s: float, sink: ResponseSink) -> int | Failure:
        """Return the answer's status (its body went to the sink if wanted) or why there was none."""
        ...

    async def close(self) -> None: ...


class InProcessTransport:
    """Calls a service's ASGI app in this process (all-in-one)."""

    mode = "in-process"

    def __init__(self, name: str, app: ASGIApp) -> None:
        self.url = f"asgi://{name}"
        self._app = app
        self._server = (name, 80)
        self._host = (b"host", name.encode())

    async def call(self, request: OutgoingRequest, timeout_s: float, sink: ResponseSink) -> int | Failure:
        status = 0
        body_given = False
        forwarding = False
        deadline: asyncio.Timeout | None = None

        async def receive() -> dict[str, Any]:
            nonlocal body_given
            if not body_given:
                body_given = True
                return {"type": "http.request", "body": request.body, "more_body": False}
            return await request.receive()

        async def send(message: dict[str, Any]) -> None:
            nonlocal status, forwarding
            kind = message["type"]
            if kind == "http.response.body":
                if forwarding:
                    await sink.body(message.get("body", b""), message.get("more_body", False))
            elif kind == "http.response.start":
                status = message["status"]
                forwarding = await sink.start(status, list(message.get("headers", ())))
                if forwarding and deadline is not None:
                    deadline.reschedule(None)  # the timeout bounds the wait for an answer, not its length

        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": request.http_version,
            "method": request.method,
            "scheme": request.scheme,
            "path": request.path,
            "raw_path": request.raw_path,
            "root_path": "",
            "query_string": request.query_string,
            "headers": [self._host, *request.headers],
            "client": request.client,
            "server": self._server,
            "state": {},
            "extensions": {},
        }
        try:
            async with asyncio.timeout(timeout_s) as deadline:
                await self._app(scope, receive, send)
        except TimeoutError:
            if not status:
                return Failure("timeout", f"no answer within {timeout_s:g} s")
        except Exception as exc:  # the upstream's own error handler answered 500 first, or nothing did
            if not status:
                return Failure("error", f"{type(exc).__name__}: {exc}"[:200])
        if not status:
            return Failure("error", "the upstream app returned without answering")
        return status

    async def close(self) -> None:
        """Nothing to release: the app belongs to its service."""


_REQUESTS = metrics.counter(
    "gateway_requests", "Requests through the proxy by upstream and outcome", ("upstream", "outcome")
)
_LATENCY = metrics.histogram(
    "gateway_upstream_seconds",
    "Time from sending to an upstream until its answer started (retries included)",
    ("upstream",),
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)


_HOP_BY_HOP = frozenset(
    {b"connection", b"keep-alive", b"transfer-encoding", b"te", b"trailer", b"upgrade", b"proxy-connection"}
)


class HttpTransport:
    """Calls a service over HTTP on pooled keep-alive connections (split mode).

    By default through the gateway's own lean client (`gateway.httpclient`); given an `httpx.AsyncClient`
    (tests route one to an ASGI app), through that client instead.
    """

    mode = "http"

    def __init__(
        self,
        url: str,
        *,
        max_connections: int = 100,
        verify: ssl.SSLContext | bool = True,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self._client = client
        self.pool = (
            HttpConnectionPool(self.url, max_connections=max_connections, verify=verify)
            if client is None
            else None
        )

    async def call(self, request: OutgoingRequest, timeout_s: float, sink: ResponseSink) -> int | Failure:
        if self.pool is None:
            return await self._call_httpx(request, timeout_s, sink)
        pool = self.pool
        target = request.raw_path
        if request.query_string:
            target += b"?" + request.query_string
        try:
            # The deadline bounds connecting and the wait for the answer's head; each body read has its own.
            async with asyncio.timeout(timeout_s):
                conn, exchange = await pool.request(request.method, target, request.headers, request.body)
                try:
                    status, raw_headers = await exchange.head
                except BaseException:
                    pool.release(conn)
                    raise
        except TimeoutError:
            return Failure("timeout", f"no answer within {timeout_s:g} s")
        except ConnectError as exc:
            return Failure("unreachable", f"ConnectError: {exc}"[:200])
        except ConnectionError as exc:
            return Failure("unreachable", f"RemoteProtocolError: {exc}"[:200])
        try:
            headers = [(k, v) for k, v in raw_headers if k not in _HOP_BY_HOP]
            if await sink.start(status, headers):
                more = True
                while more:
                    try:
                        chunk, more = await exchange.read(timeout_s)
                    except (TimeoutError, ConnectionError):
                        return status  # headers are gone already: the client sees a broken answer
                    if chunk or not more:
                        await sink.body(chunk, more)
        finally:
            pool.release(conn)
        return status

    async def _call_httpx(
        self, request: OutgoingRequest, timeout_s: float, sink: ResponseSink
    ) -> int | Failure:
        assert self._client is not None
        target = self.url + request.raw_path.decode("latin-1")
        if request.query_string:
            target += "?" + request.query_string.decode("latin-1")
        outgoing = self._client.build_request(
            request.method,
            target,
            headers=request.headers,
            content=request.body,
            timeout=httpx.Timeout(timeout_s),
        )
        try:
            # httpx times each read separately; the deadline bounds the whole wait for the answer's head.
            async with asyncio.timeout(timeout_s):
                response = await self._client.send(outgoing, stream=True)
        except (httpx.TimeoutException, TimeoutError):
            return Failure("timeout", f"no answer within {timeout_s:g} s")
        except httpx.HTTPError as exc:
            return Failure("unreachable", f"{type(exc).__name__}: {exc}"[:200])
        try:
            headers = [(k.lower(), v) for k, v in response.headers.raw if k.lower() not in _HOP_BY_HOP]
            if await sink.start(response.status_code, headers):
                try:
                    async for chunk in response.aiter_raw():
                        await sink.body(chunk, True)
                except httpx.HTTPError:
                    # Headers are gone already: end without completing, so the client sees a broken answer.
                    return response.status_code
                await sink.body(b"", False)
        finally:
            await response.aclose()
        return response.status_code

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.close()
        if self._client is not None:
            await self._client.aclose()


@dataclass(slots=True)
class Upstream:
    """One service behind the gateway with its resilience parts."""

    name: str
    transport: Transport
    breaker: Breaker
    bulkhead: Bulkhead
    timeout_s: float
    _outcomes: dict[str, Any] = field(default_factory=dict, repr=False)
    _latency: Any = None

    def count(self, outcome: str) -> None:
        child = self._outcomes.get(outcome)
        if child is None:
            child = self._outcomes[outcome] = _REQUESTS.labels(self.name, outcome)
        child.inc()

    def observe(self, seconds: float) -> None:
        if self._latency is None:
            self._latency = _LATENCY.labels(self.name)
        self._latency.observe(seconds)

    def snapshot(self) -> dict[str, Any]:
        return {
            "mode": self.transport.mode,
            "url": self.transport.url,
            "pool": self.bulkhead.pool,
            "timeout_s": self.timeout_s,
            "breaker": self.breaker.snapshot(),
            "bulkhead": self.bulkhead.snapshot(),
        }


class UpstreamTokens:
    """Mints and caches the internal service token that carries a principal to the upstreams."""

    def __init__(
        self, tokens: TokenService, clock: Clock, *, ttl_s: int = 60, max_entries: int = 50_000
    ) -> None:
        self._tokens = tokens
        self._clock = clock
        self._ttl_s = ttl_s
        self._reuse_ns = ttl_s * _NS // 2
        self._max = max_entries
        self._cache: dict[Principal, tuple[bytes, int]] = {}

    def authorization(self, principal: Principal) -> bytes:
        """Return the `Authorization` header value for calls made for `principal`."""
        now = self._clock.monotonic_ns()
        hit = self._cache.get(principal)
        if hit is not None and hit[1] > now:
            return hit[0]
        token = self._tokens.issue(
            principal.subject,
            tenant=principal.tenant,
            roles=principal.roles,
            ttl_s=self._ttl_s,
            mfa=principal.mfa,
            tier=principal.tier,
        )
        value = b"Bearer " + token.encode()
        if len(self._cache) >= self._max:
            self._cache.clear()  # simplest bound; refilling costs one signature per active principal
        self._cache[principal] = (value, now + self._reuse_ns)
        return value
