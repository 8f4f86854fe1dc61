"""The bridge client delivers every buffered batch exactly once across dropped connections."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from http import HTTPStatus
from pathlib import Path

import pytest
from agent_fakes import Action, FakeBridge, eventually

from aitrading.agent._internal import backoff_delay
from aitrading.agent.buffer import Cursor, DurableBuffer
from aitrading.agent.client import AuthenticationFailed, BridgeClient, LinkState
from aitrading.common.clock import LiveClock
from aitrading.model.market import Tick
from aitrading.model.wire import BridgeError, TickBatchFrame

DEVICE, KEY = "dev-1", "key-1"
SRC = f"{DEVICE}/Broker-Demo"
SRC2 = f"{DEVICE}/Other-Live"


@pytest.fixture
async def bridge() -> AsyncIterator[FakeBridge]:
    server = await FakeBridge(DEVICE, KEY).start()
    yield server
    await server.stop()


@pytest.fixture
def buffer(tmp_path: Path) -> DurableBuffer:
    return DurableBuffer(tmp_path / "buffer.sqlite")


def add_batches(buf: DurableBuffer, n: int, src: str = SRC, size: int = 3) -> None:
    for _ in range(n):
        seq = buf.next_seq(src)
        ticks = [
            Tick(feed=src.split("/")[1], symbol="EURUSD", time_msc=seq * 100 + i, bid=seq * 1000 + i, ask=1)
            for i in range(size)
        ]
        buf.append(src, src.split("/")[1], ticks, {"EURUSD": Cursor(seq * 100 + size - 1, 1)})


def client(
    buf: DurableBuffer, url: str, key: str = KEY, sources: tuple[str, ...] = (SRC,), window_batches: int = 64
) -> BridgeClient:
    return BridgeClient(
        buf,
        url=url,
        device_id=DEVICE,
        device_key=key,
        sources=sources,
        clock=LiveClock(),
        backoff_base_s=0.01,
        backoff_cap_s=0.05,
        rng=random.Random(1),
        window_batches=window_batches,
    )


async def stop(c: BridgeClient, task: asyncio.Task[None]) -> None:
    await c.stop()
    await asyncio.wait_for(task, 5)


def assert_exactly_once(bridge: FakeBridge, src: str, n: int) -> None:
    assert sorted(seq for s, seq in bridge.stored if s == src) == list(range(1, n + 1))
    assert all(count == 1 for count in bridge.store_count.values())
    ticks = [(t.time_msc, t.bid) for t in bridge.ticks(src)]
    assert len(ticks) == len(set(ticks))


async def test_buffered_batches_are_sent_in_order_acked_and_removed(
    bridge: FakeBridge, buffer: DurableBuffer
) -> None:
    add_batches(buffer, 5)
    c = client(buffer, bridge.url)
    task = asyncio.create_task(c.run())

    await eventually(lambda: buffer.depth() == 0, what="all batches acked")
    add_batches(buffer, 2)  # new batches while connected
    c.notify()
    await eventually(lambda: buffer.depth() == 0 and len(bridge.stored) == 7, what="new batches acked")
    await stop(c, task)

    assert [seq for _, _, seq in bridge.received] == list(range(1, 8))
    assert bridge.hellos[0].sources == [SRC]
    assert c.acked == {SRC: 7}
    assert c.state is LinkState.STOPPED
    assert_exactly_once(bridge, SRC, 7)


async def test_a_dropped_connection_resends_only_what_the_bridge_does_not_hold(
    bridge: FakeBridge, buffer: DurableBuffer
) -> None:
    add_batches(buffer, 10)

    def first_connection_breaks(conn: int, frame: TickBatchFrame) -> Action:
        if conn > 1:
            return "ack"
        if frame.seq <= 3:
            return "ack"
        if frame.seq <= 5:
            return "store"  # durable at the bridge, ack never sent
        if frame.seq == 6:
            return "drop"  # the connection dies mid-stream
        return "hold"

    bridge.on_frame = first_connection_breaks
    c = client(buffer, bridge.url)
    task = asyncio.create_task(c.run())

    await eventually(lambda: buffer.depth() == 0, what="buffer empty")
    add_batches(buffer, 3)
    c.notify()
    await eventually(lambda: buffer.depth() == 0 and len(bridge.stored) == 13, what="late batches acked")
    await stop(c, task)

    assert_exactly_once(bridge, SRC, 13)
    second = [seq for conn, _, seq in bridge.received if conn == 2]
    assert second == list(range(6, 14)), "the welcome said 1..5 are durable: they are not sent again"
    assert c.reconnects == 1


async def test_unacknowledged_batches_are_resent_and_the_bridge_acks_duplicates(
    bridge: FakeBridge, buffer: DurableBuffer
) -> None:
    add_batches(buffer, 4)
    # The first connection dies on the first batch; the second gets all of them.
    bridge.on_frame = lambda conn, f: "drop" if conn == 1 and f.seq == 1 else "ack"
    c = client(buffer, bridge.url)
    task = asyncio.create_task(c.run())

    await eventually(lambda: buffer.depth() == 0, what="buffer empty")
    await stop(c, task)

    assert_exactly_once(bridge, SRC, 4)
    assert [seq for conn, _, seq in bridge.received if conn == 2] == [1, 2, 3, 4]


async def test_at_most_a_window_of_batches_is_unacknowledged_on_the_wire(
    bridge: FakeBridge, buffer: DurableBuffer
) -> None:
    add_batches(buffer, 10)
    held: list[TickBatchFrame] = []

    def hold(conn: int, frame: TickBatchFrame) -> Action:
        held.append(frame)
        return "hold"

    bridge.on_frame = hold
    c = client(buffer, bridge.url, window_batches=4)
    task = asyncio.create_task(c.run())
    await eventually(lambda: len(held) == 4, what="a full window")
    await asyncio.sleep(0.1)
    assert len(held) == 4
    assert c.inflight == 4

    (ws,) = bridge.open
    for frame in held[:2]:
        bridge.stored[(frame.src, frame.seq)] = frame
        await bridge.ack(ws, frame)
    await eventually(lambda: len(held) == 6, what="two more sent after two acks")
    await asyncio.sleep(0.1)
    assert len(held) == 6
    bridge.on_frame = None  # from now on the bridge acks as frames arrive
    for frame in held[2:]:
        bridge.stored[(frame.src, frame.seq)] = frame
        await bridge.ack(ws, frame)
    await eventually(lambda: buffer.depth() == 0, what="buffer empty")
    await stop(c, task)

    assert sorted(seq for _, seq in bridge.stored) == list(range(1, 11))


async def test_several_sources_share_one_connection(bridge: FakeBridge, buffer: DurableBuffer) -> None:
    add_batches(buffer, 3, SRC)
    add_batches(buffer, 4, SRC2)
    c = client(buffer, bridge.url, sources=(SRC, SRC2))
    task = asyncio.create_task(c.run())

    await eventually(lambda: buffer.depth() == 0, what="both sources acked")
    await stop(c, task)

    assert_exactly_once(bridge, SRC, 3)
    assert_exactly_once(bridge, SRC2, 4)
    assert c.acked == {SRC: 3, SRC2: 4}


async def test_the_client_retries_until_the_bridge_comes_back(tmp_path: Path) -> None:
    buffer = DurableBuffer(tmp_path / "b.sqlite")
    add_batches(buffer, 3)
    bridge = await FakeBridge(DEVICE, KEY).start()
    url = bridge.url
    await bridge.stop()
    c = client(buffer, url)
    task = asyncio.create_task(c.run())
    await eventually(lambda: c.reconnects >= 3, what="several refused attempts")
    assert "Connect" in c.last_error or "refused" in c.last_error.lower()

    port = int(url.rsplit(":", 1)[1].split("/")[0])
    revived = await FakeBridge(DEVICE, KEY).start(port)
    try:
        await eventually(lambda: buffer.depth() == 0, what="delivered after the bridge came back")
        await stop(c, task)
    finally:
        await revived.stop()
    assert_exactly_once(revived, SRC, 3)


async def test_a_transient_close_is_retried(bridge: FakeBridge, buffer: DurableBuffer) -> None:
    add_batches(buffer, 2)
    bridge.close_with = (1011, "internal error")
    c = client(buffer, bridge.url)
    task = asyncio.create_task(c.run())
    await eventually(lambda: bridge.connections >= 3, what="retries")
    bridge.close_with = None

    await eventually(lambda: buffer.depth() == 0, what="delivered")
    await stop(c, task)
    assert_exactly_once(bridge, SRC, 2)


@pytest.mark.parametrize(("code", "reason"), [(4401, "bad device key"), (4403, "source not owned")])
async def test_a_policy_close_stops_retrying_and_says_why(
    bridge: FakeBridge, buffer: DurableBuffer, code: int, reason: str
) -> None:
    add_batches(buffer, 2)
    bridge.close_with = (code, reason)
    c = client(buffer, bridge.url)

    with pytest.raises(AuthenticationFailed, match="refused device 'dev-1'") as err:
        await asyncio.wait_for(c.run(), 5)

    assert str(code) in str(err.value)
    assert "check the device id and key" in str(err.value)
    assert c.state is LinkState.AUTH_FAILED
    assert c.last_error == str(err.value)
    assert bridge.connections == 1
    assert buffer.depth() == 2, "nothing leaves the buffer without an ack"


async def test_a_wrong_key_is_refused_once_and_not_retried(bridge: FakeBridge, buffer: DurableBuffer) -> None:
    c = client(buffer, bridge.url, key="wrong")

    with pytest.raises(AuthenticationFailed, match="bad key"):
        await asyncio.wait_for(c.run(), 5)
    assert bridge.connections == 1


async def test_an_http_401_on_the_upgrade_is_an_auth_failure(
    bridge: FakeBridge, buffer: DurableBuffer
) -> None:
    bridge.http_status = HTTPStatus.UNAUTHORIZED
    c = client(buffer, bridge.url)

    with pytest.raises(AuthenticationFailed, match="HTTP 401"):
        await asyncio.wait_for(c.run(), 5)


@pytest.mark.parametrize("code", ["unauthenticated", "forbidden", "auth_revoked"])
async def test_a_bridge_error_with_an_auth_code_stops_retrying(
    bridge: FakeBridge, buffer: DurableBuffer, code: str
) -> None:
    bridge.first_error = BridgeError(code=code, reason="device revoked")
    c = client(buffer, bridge.url)

    with pytest.raises(AuthenticationFailed, match="device revoked"):
        await asyncio.wait_for(c.run(), 5)
    assert bridge.connections == 1


async def test_a_non_auth_bridge_error_is_retried(bridge: FakeBridge, buffer: DurableBuffer) -> None:
    add_batches(buffer, 1)
    bridge.first_error = BridgeError(code="protocol", reason="try again")
    c = client(buffer, bridge.url)
    task = asyncio.create_task(c.run())
    await eventually(lambda: bridge.connections >= 2, what="a retry")
    assert "protocol" in c.last_error
    bridge.first_error = None

    await eventually(lambda: buffer.depth() == 0, what="delivered")
    await stop(c, task)


async def test_drain_waits_for_the_last_acks(bridge: FakeBridge, buffer: DurableBuffer) -> None:
    add_batches(buffer, 3)
    c = client(buffer, bridge.url)
    task = asyncio.create_task(c.run())

    assert await c.drain(5.0)
    await stop(c, task)
    assert buffer.depth() == 0


def test_backoff_grows_exponentially_up_to_the_cap_with_jitter() -> None:
    rng = random.Random(7)
    delays = [backoff_delay(n, base=0.5, cap=30.0, rng=rng) for n in range(12)]

    assert all(0 <= d <= min(30.0, 0.5 * 2**n) for n, d in enumerate(delays))
    assert max(delays[8:]) > 4 * max(delays[:2])
    assert len(set(delays)) == len(delays)
