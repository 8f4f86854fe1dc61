"""The gateway's own HTTP client (split mode) over real loopback sockets: keep-alive, streaming, failures."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from gateway_edge_helpers import SECRET, FakeUpstream, bearer, client_of

from aitrading.common.auth import TokenService, principal_dependency
from aitrading.common.serving import HttpServers
from aitrading.gateway.config import GatewayConfig, RetryConfig
from aitrading.gateway.httpclient import HttpConnectionPool
from aitrading.gateway.service import GatewayService
from aitrading.gateway.upstream import Failure, HttpTransport, OutgoingRequest

FAST_RETRY = RetryConfig(attempts=3, initial_s=0.001, max_s=0.002, jitter_s=0.001)


@pytest.fixture
def tokens() -> TokenService:
    return TokenService(SECRET)


@pytest.fixture
async def served(tokens: TokenService) -> AsyncIterator[tuple[FakeUpstream, GatewayService]]:
    """A FakeUpstream `engine` served by uvicorn on loopback, and a gateway calling it over HTTP."""
    engine = FakeUpstream("engine", tokens)
    servers = HttpServers()
    servers.add("engine", lambda: engine.app, "127.0.0.1", 0)
    await servers.start()
    gateway = GatewayService(
        {"engine": f"http://127.0.0.1:{servers.port('engine')}"},
        tokens=tokens,
        authenticate=principal_dependency(tokens),
        config=GatewayConfig(retry=FAST_RETRY, timeout_s=0.5),
    )
    await gateway.start()
    try:
        yield engine, gateway
    finally:
        await gateway.stop()
        await servers.stop()


def _pool(gateway: GatewayService) -> HttpConnectionPool:
    transport = gateway.upstreams["engine"].transport
    assert isinstance(transport, HttpTransport)
    assert transport.pool is not None
    return transport.pool


async def test_calls_over_http_reuse_one_keep_alive_connection(
    tokens: TokenService, served: tuple[FakeUpstream, GatewayService]
) -> None:
    engine, gateway = served
    async with client_of(gateway) as client:
        answers = [
            await client.get(
                "/api/v1/engine/whoami",
                params={"i": str(i)},
                headers={**bearer(tokens), "X-Request-ID": f"r{i}"},
            )
            for i in range(5)
        ]
    assert [a.status_code for a in answers] == [200] * 5
    assert [a.json()["query"] for a in answers] == [f"i={i}" for i in range(5)]
    assert answers[0].json()["subject"] == "user:alice"
    assert [h["x-request-id"] for h in engine.seen_headers] == [f"r{i}" for i in range(5)]
    assert all(h["host"].startswith("127.0.0.1:") for h in engine.seen_headers)
    assert _pool(gateway).opened == 1


async def test_a_post_body_reaches_the_upstream_and_its_answer_comes_back(
    tokens: TokenService, served: tuple[FakeUpstream, GatewayService]
) -> None:
    _, gateway = served
    headers = bearer(tokens, roles=("portfolio_manager",), mfa=True)
    async with client_of(gateway) as client:
        resp = await client.post(
            "/api/v1/engine/orders", json={"symbol": "EURUSD", "volume": "0.10"}, headers=headers
        )
    assert resp.status_code == 201
    assert resp.json() == {"accepted": {"symbol": "EURUSD", "volume": "0.10"}, "by": "user:alice"}


async def test_a_streamed_answer_arrives_whole(
    tokens: TokenService, served: tuple[FakeUpstream, GatewayService]
) -> None:
    _, gateway = served
    async with client_of(gateway) as client:
        resp = await client.get("/api/v1/engine/stream", headers=bearer(tokens))
    assert resp.status_code == 200
    assert resp.text == "chunk-0;chunk-1;chunk-2;chunk-3;chunk-4;"


async def test_a_slow_upstream_times_out_and_the_next_call_gets_a_fresh_connection(
    tokens: TokenService, served: tuple[FakeUpstream, GatewayService]
) -> None:
    engine, gateway = served
    engine.delay_s = 0.8  # past the 0.5 s timeout, short enough not to hold up the server's shutdown
    async with client_of(gateway) as client:
        slow = await client.get("/api/v1/engine/slow", headers=bearer(tokens))
        engine.delay_s = 0.0
        fine = await client.get("/api/v1/engine/slow", headers=bearer(tokens))
    assert slow.status_code == 504
    assert slow.json()["reason"] == "upstream_timeout"
    assert fine.status_code == 200
    assert _pool(gateway).opened >= 2  # the timed-out connection was not reused


async def test_a_failing_get_is_retried_over_http_until_it_succeeds(
    tokens: TokenService, served: tuple[FakeUpstream, GatewayService]
) -> None:
    engine, gateway = served
    engine.fail_next = 2
    async with client_of(gateway) as client:
        resp = await client.get("/api/v1/engine/flaky", headers=bearer(tokens))
    assert resp.status_code == 200
    assert engine.calls["flaky"] == 3


# --------------------------------------------------------------------------- against a raw server

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class _Sink:
    def __init__(self) -> None:
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.data = b""
        self.ended = False

    async def start(self, status: int, headers: list[tuple[bytes, bytes]]) -> bool:
        self.status, self.headers = status, headers
        return True

    async def body(self, chunk: bytes, more: bool) -> None:
        self.data += chunk
        self.ended = not more


def _request(method: str = "GET") -> OutgoingRequest:
    async def receive() -> dict[str, object]:
        return {"type": "http.disconnect"}

    return OutgoingRequest(
        method=method,
        path="/api/v1/x",
        raw_path=b"/api/v1/x",
        query_string=b"",
        headers=[(b"accept", b"*/*")],
        body=b"",
        client=None,
        scheme="http",
        http_version="1.1",
        receive=receive,
    )


async def _raw_server(handler: Handler) -> tuple[asyncio.Server, str]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}"


async def _read_head(reader: asyncio.StreamReader) -> bytes:
    return await reader.readuntil(b"\r\n\r\n")


async def test_a_connection_the_server_closed_while_idle_is_replaced() -> None:
    async def once_then_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        await writer.drain()
        writer.close()  # no `Connection: close`: the client learns only from the socket

    server, url = await _raw_server(once_then_close)
    transport = HttpTransport(url)
    try:
        first, second = _Sink(), _Sink()
        assert await transport.call(_request(), 1.0, first) == 200
        await asyncio.sleep(0.05)
        assert await transport.call(_request(), 1.0, second) == 200
    finally:
        await transport.close()
        server.close()
    assert (first.data, second.data) == (b"ok", b"ok")
    assert transport.pool is not None
    assert transport.pool.opened == 2


async def test_a_reused_connection_dropped_unanswered_is_retried_afresh_only_for_an_idempotent_call() -> None:
    async def one_answer_per_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        await writer.drain()
        await _read_head(reader)  # a second request on this connection: read, then hang up unanswered
        writer.close()

    server, url = await _raw_server(one_answer_per_connection)
    transport = HttpTransport(url)
    try:
        get_twice = [_Sink(), _Sink()]
        results = [await transport.call(_request(), 1.0, sink) for sink in get_twice]
        post = await transport.call(_request("POST"), 1.0, _Sink())
    finally:
        await transport.close()
        server.close()
    assert results == [200, 200]
    assert [sink.data for sink in get_twice] == [b"ok", b"ok"]
    assert isinstance(post, Failure)  # a POST may have been acted upon: never re-sent by the client
    assert post.kind == "unreachable"
    assert transport.pool is not None
    assert transport.pool.opened == 2


async def test_a_chunked_answer_is_decoded_and_a_head_answer_has_no_body() -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                head = await _read_head(reader)
            except asyncio.IncompleteReadError:
                return
            if head.startswith(b"HEAD"):
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n")
            else:
                writer.write(
                    b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
                )
            await writer.drain()

    server, url = await _raw_server(answer)
    transport = HttpTransport(url)
    try:
        got, head = _Sink(), _Sink()
        assert await transport.call(_request(), 1.0, got) == 200
        assert await asyncio.wait_for(transport.call(_request("HEAD"), 1.0, head), 2.0) == 200
    finally:
        await transport.close()
        server.close()
    assert (got.data, got.ended) == (b"abcde", True)
    assert all(k != b"transfer-encoding" for k, _ in got.headers)  # hop-by-hop: not passed on
    assert (head.data, head.ended) == (b"", True)


async def _answered_then_closed(raw: bytes) -> _Sink:
    """Call a server that writes `raw` as its whole answer and closes; return what reached the sink."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_head(reader)
        writer.write(raw)
        await writer.drain()
        writer.close()

    server, url = await _raw_server(answer)
    transport = HttpTransport(url)
    try:
        sink = _Sink()
        assert await transport.call(_request(), 1.0, sink) == 200
    finally:
        await transport.close()
        server.close()
    return sink


async def test_a_body_without_length_ends_with_the_connection_and_is_passed_on_whole() -> None:
    sink = await _answered_then_closed(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nall of it")
    assert (sink.data, sink.ended) == (b"all of it", True)


async def test_an_answer_cut_short_is_not_completed() -> None:
    sink = await _answered_then_closed(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly this")
    assert sink.data == b"only this"
    assert not sink.ended  # the client sees a broken answer, not a short one passed off as whole


async def test_a_malformed_answer_is_an_unreachable_upstream_not_a_crash() -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_head(reader)
        writer.write(b"NOT HTTP AT ALL\r\n\r\n")
        await writer.drain()

    server, url = await _raw_server(garbage)
    transport = HttpTransport(url)
    try:
        result = await transport.call(_request(), 1.0, _Sink())
    finally:
        await transport.close()
        server.close()
    assert isinstance(result, Failure)
    assert result.kind == "unreachable"
    assert "malformed answer" in result.detail


async def test_an_https_url_without_a_listening_tls_server_fails_cleanly() -> None:
    async def plain(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")  # not a TLS handshake
        await writer.drain()
        writer.close()

    server, url = await _raw_server(plain)
    transport = HttpTransport(url.replace("http://", "https://"))
    try:
        result = await transport.call(_request(), 1.0, _Sink())
    finally:
        await transport.close()
        server.close()
    assert isinstance(result, Failure)
    assert result.kind == "unreachable"


def test_an_upstream_url_must_be_http_or_https() -> None:
    with pytest.raises(ValueError, match="http:// or https://"):
        HttpConnectionPool("ftp://example.org")
