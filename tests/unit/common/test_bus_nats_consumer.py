"""The durable consumer's fetch loop survives empty fetches of either timeout kind and stops on cancel."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import nats.errors

from aitrading.common.bus.nats import _Consumer


class _Raw:
    subject = "md.tick.X.Y"
    data = b"\xc1"  # a byte msgpack never uses

    def __init__(self) -> None:
        self.terminated = False

    async def term(self) -> None:
        self.terminated = True


class _Fetches:
    """A pull subscription whose fetches follow a script: an exception to raise or a batch to return."""

    def __init__(self, script: list[Any]) -> None:
        self.script = script
        self.calls = 0

    async def fetch(self, batch: int, timeout: float) -> list[Any]:
        self.calls += 1
        if not self.script:
            await asyncio.sleep(3600)  # nothing more: wait like a long fetch
        step = self.script.pop(0)
        if isinstance(step, BaseException):
            raise step
        return list(step)

    async def unsubscribe(self) -> None:
        return None


def _bus() -> Any:
    return SimpleNamespace(_consumers=set(), decode_errors=0, handler_errors=0)


async def _handler(delivery: Any) -> None:
    raise AssertionError("undecodable messages never reach the handler")


async def test_empty_fetches_of_either_timeout_kind_keep_the_loop_consuming() -> None:
    raw = _Raw()
    fetches = _Fetches([TimeoutError(), nats.errors.TimeoutError(), [raw]])  # asyncio's and nats-py's
    bus = _bus()
    consumer = _Consumer(bus, fetches, "d1", _handler, ack_wait=30.0)  # type: ignore[arg-type]
    for _ in range(100):
        if bus.decode_errors:
            break
        await asyncio.sleep(0)
    assert bus.decode_errors == 1  # delivered after two empty fetches
    assert raw.terminated
    assert not consumer._task.done()
    await consumer.unsubscribe()
    assert consumer._task.cancelled()


async def test_a_cancel_that_surfaces_as_a_timeout_still_stops_the_loop() -> None:
    class _SwallowingFetch(_Fetches):
        async def fetch(self, batch: int, timeout: float) -> list[Any]:
            self.calls += 1
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                raise TimeoutError from None  # what 3.11's wait_for may do with a cancel
            return []

    fetches = _SwallowingFetch([])
    consumer = _Consumer(_bus(), fetches, "d2", _handler, ack_wait=30.0)  # type: ignore[arg-type]
    await asyncio.sleep(0)
    await asyncio.wait_for(consumer.unsubscribe(), timeout=5)
    assert consumer._task.done()
    assert fetches.calls == 1
