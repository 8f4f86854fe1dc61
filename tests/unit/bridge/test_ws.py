"""Hostile and friendly agents against a real bridge served by uvicorn on a free port."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import msgspec
import pytest
import structlog
import websockets
from fakes import MemorySink
from websockets.exceptions import ConnectionClosed

from aitrading.bridge.service import BridgeService
from aitrading.common import metrics
from aitrading.common.bus import MemoryBus, decode, encode
from aitrading.common.clock import LiveClock
from aitrading.common.config import BridgeConfig
from aitrading.common.serving import HttpServers
from aitrading.model.market import Tick
from aitrading.model.wire import AgentHello, BatchAck, BridgeError, BridgeWelcome, TickBatchFrame

KEYS = {"dev-a": "key-a", "dev-b": "key-b"}


@dataclass
class Bridge:
    url: str
    sink: MemorySink
    service: BridgeService


@pytest.fixture
async def bridge() -> AsyncIterator[Bridge]:
    async def auth(device: str, key: str) -> str | None:
        return "tenant" if KEYS.get(device) == key else None

    bus = MemoryBus()
    await bus.connect()
    sink = MemorySink()
    service = BridgeService(
        BridgeConfig(max_frame_bytes=1_048_576, max_batch_ticks=5_000, store_flush_ms=5),
        bus,
        sink,
        LiveClock(),
        auth,
    )
    servers = HttpServers()
    servers.add("bridge", lambda: service.app, "127.0.0.1", 0, ws_max_size=1_048_576)
    await service.start()
    await servers.start()
    yield Bridge(f"ws://127.0.0.1:{servers.port('bridge')}/ws/agent", sink, service)
    await servers.stop()
    await service.stop()
    await bus.close()


def now_ticks(n: int, symbol: str = "EURUSD", bid: int = 1_100_000_000) -> list[Tick]:
    base = LiveClock().now_ms() - 10_000
    return [
        Tick(feed="SIM", symbol=symbol, time_msc=base + i, bid=bid + i, ask=bid + 10_000 + i)
        for i in range(n)
    ]


async def connect(url: str, device: str = "dev-a", key: str | None = None) -> websockets.ClientConnection:
    headers = {"X-Device-Id": device, "Authorization": f"Bearer {key or KEYS[device]}"}
    ws = await websockets.connect(url, additional_headers=headers, max_size=None)
    await ws.send(encode(AgentHello(device_id=device, agent_version="t", sources=[f"{device}/SIM"])))
    welcome = decode(await ws.recv())
    assert isinstance(welcome, BridgeWelcome)
    return ws


async def closed_with(ws: websockets.ClientConnection) -> tuple[int, str | None]:
    """Read until the bridge closes; return the close code and the BridgeError code it sent first."""
    kind = None
    try:
        while True:
            msg = decode(await ws.recv())  # type: ignore[arg-type]
            if isinstance(msg, BridgeError):
                kind = msg.code
    except ConnectionClosed as exc:
        code = exc.rcvd.code if exc.rcvd is not None else -1
    return code, kind


async def test_agent_batch_is_acked_after_it_is_stored(bridge: Bridge) -> None:
    ws = await connect(bridge.url)
    batch = now_ticks(10)
    await ws.send(encode(TickBatchFrame(src="dev-a/SIM", seq=1, feed="SIM", ticks=batch)))
    ack = decode(await ws.recv())
    assert ack == BatchAck(src="dev-a/SIM", seq=1, accepted=10, rejected=0)
    assert bridge.sink.ticks == batch
    await ws.close()


async def test_missing_or_bad_device_key_is_closed_with_4401(bridge: Bridge) -> None:
    for headers in (
        {},
        {"X-Device-Id": "dev-a", "Authorization": "Bearer wrong"},
        {"X-Device-Id": "dev-a", "Authorization": "Basic key-a"},
    ):
        ws = await websockets.connect(bridge.url, additional_headers=headers)
        assert await closed_with(ws) == (4401, "unauthenticated")
    assert bridge.sink.ticks == []


async def test_garbage_and_text_frames_close_only_that_connection(bridge: Bridge) -> None:
    with structlog.testing.capture_logs() as logs:
        await _garbage_and_text_frames(bridge)
    assert not [e for e in logs if e["log_level"] in ("error", "critical") or "exc_info" in e], logs


async def _garbage_and_text_frames(bridge: Bridge) -> None:
    good = await connect(bridge.url, "dev-b")
    bad = await connect(bridge.url)
    await bad.send(b"\xc1\xff garbage")
    assert await closed_with(bad) == (1003, "malformed")
    bad = await connect(bridge.url)
    await bad.send("hello")
    assert await closed_with(bad) == (1003, "malformed")
    await good.send(encode(TickBatchFrame(src="dev-b/SIM", seq=1, feed="SIM", ticks=now_ticks(3))))
    assert isinstance(decode(await good.recv()), BatchAck)
    await good.close()
    assert len(bridge.sink.ticks) == 3


async def test_nan_price_frame_does_not_decode_and_stores_nothing(bridge: Bridge) -> None:
    ws = await connect(bridge.url)
    frame = msgspec.msgpack.encode(
        ["TickBatchFrame", "dev-a/SIM", 1, "SIM", [["Tick", "SIM", "EURUSD", 1, float("nan"), 2]]]
    )
    await ws.send(frame)
    assert await closed_with(ws) == (1003, "malformed")
    assert bridge.sink.ticks == []


async def test_negative_and_crossed_prices_are_rejected_counted_and_not_stored(bridge: Bridge) -> None:
    before = metrics.counter("bridge_ticks_rejected", "", ("feed", "reason")).labels(
        "SIM", "non_positive_price"
    )
    start = before._value.get()
    ws = await connect(bridge.url)
    good = now_ticks(2)
    bad = [
        Tick(feed="SIM", symbol="EURUSD", time_msc=good[0].time_msc, bid=-5, ask=10),
        Tick(feed="SIM", symbol="EURUSD", time_msc=good[0].time_msc, bid=20, ask=10),
    ]
    await ws.send(encode(TickBatchFrame(src="dev-a/SIM", seq=1, feed="SIM", ticks=bad + good)))
    ack = decode(await ws.recv())
    assert ack == BatchAck(src="dev-a/SIM", seq=1, accepted=2, rejected=2)
    assert bridge.sink.ticks == good
    assert before._value.get() == start + 1
    await ws.close()


async def test_ten_megabyte_frame_closes_that_connection_with_1009(bridge: Bridge) -> None:
    ws = await connect(bridge.url)
    await ws.send(b"\x00" * (10 * 2**20))
    code, _ = await closed_with(ws)
    assert code == 1009
    assert bridge.sink.ticks == []


async def test_source_of_another_device_is_forbidden(bridge: Bridge) -> None:
    ws = await websockets.connect(
        bridge.url, additional_headers={"X-Device-Id": "dev-a", "Authorization": "Bearer key-a"}
    )
    await ws.send(encode(AgentHello(device_id="dev-a", agent_version="t", sources=["dev-b/SIM"])))
    assert await closed_with(ws) == (4403, "forbidden")


async def test_reconnecting_agent_learns_what_is_durable_and_resends_nothing_twice(bridge: Bridge) -> None:
    ws = await connect(bridge.url)
    await ws.send(encode(TickBatchFrame(src="dev-a/SIM", seq=1, feed="SIM", ticks=now_ticks(4))))
    assert isinstance(decode(await ws.recv()), BatchAck)
    await ws.close()
    ws = await websockets.connect(
        bridge.url, additional_headers={"X-Device-Id": "dev-a", "Authorization": "Bearer key-a"}
    )
    await ws.send(encode(AgentHello(device_id="dev-a", agent_version="t", sources=["dev-a/SIM"])))
    welcome = decode(await ws.recv())
    assert isinstance(welcome, BridgeWelcome)
    assert welcome.durable == {"dev-a/SIM": 1}
    await ws.send(encode(TickBatchFrame(src="dev-a/SIM", seq=1, feed="SIM", ticks=now_ticks(4))))
    dup = decode(await ws.recv())
    assert isinstance(dup, BatchAck)
    assert dup.duplicate
    assert len(bridge.sink.ticks) == 4
    await ws.close()


async def test_announced_symbols_make_other_symbols_of_that_feed_unknown(bridge: Bridge) -> None:
    ws = await websockets.connect(
        bridge.url, additional_headers={"X-Device-Id": "dev-a", "Authorization": "Bearer key-a"}
    )
    hello = AgentHello(
        device_id="dev-a", agent_version="t", sources=["dev-a/SIM"], symbols={"SIM": {"EURUSD": 5}}
    )
    await ws.send(encode(hello))
    assert isinstance(decode(await ws.recv()), BridgeWelcome)
    batch = now_ticks(2) + now_ticks(1, symbol="GBPUSD")
    await ws.send(encode(TickBatchFrame(src="dev-a/SIM", seq=1, feed="SIM", ticks=batch)))
    ack = decode(await ws.recv())
    assert ack == BatchAck(src="dev-a/SIM", seq=1, accepted=2, rejected=1)
    assert bridge.service.symbols.digits("SIM", "EURUSD") == 5
    assert [t.symbol for t in bridge.sink.ticks] == ["EURUSD", "EURUSD"]
    await ws.close()
