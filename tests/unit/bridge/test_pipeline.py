import asyncio
from collections import Counter

from fakes import MemorySink

from aitrading.bridge.pipeline import IngestPipeline
from aitrading.common.bus import MemoryBus, Message
from aitrading.common.clock import LiveClock
from aitrading.model.market import Tick


def ticks(n: int, start: int = 1_700_000_000_000, symbol: str = "EURUSD") -> list[Tick]:
    return [
        Tick(feed="SIM", symbol=symbol, time_msc=start + i, bid=1_100_000_000 + i, ask=1_100_010_000 + i)
        for i in range(n)
    ]


class Acks:
    def __init__(self) -> None:
        self.got: list[tuple[str, int, int, int, bool]] = []

    async def __call__(self, src: str, seq: int, accepted: int, rejected: int, duplicate: bool) -> None:
        self.got.append((src, seq, accepted, rejected, duplicate))


async def make(sink: MemorySink, **kw: int) -> tuple[IngestPipeline, MemoryBus, list[tuple[str, Message]]]:
    bus = MemoryBus()
    await bus.connect()
    seen: list[tuple[str, Message]] = []

    async def capture(subject: str, msg: Message) -> None:
        seen.append((subject, msg))

    await bus.subscribe("md.tick.>", capture)
    pipe = IngestPipeline(
        bus, sink, LiveClock(), flush_ms=kw.get("flush_ms", 10), flush_ticks=kw.get("flush_ticks", 1000)
    )
    await pipe.start()
    return pipe, bus, seen


async def test_batch_is_published_stored_and_acked_only_after_the_store_write() -> None:
    sink = MemorySink()
    pipe, _, seen = await make(sink, flush_ms=50)
    acks = Acks()
    batch = ticks(5)
    await pipe.submit("dev/SIM", 1, "SIM", batch, Counter({"duplicate": 2}), acks)
    assert [m for _, m in seen] == batch
    assert seen[0][0] == "md.tick.SIM.EURUSD"
    assert acks.got == []  # not durable yet
    await pipe.stop()
    assert sink.ticks == batch
    assert sink.marks == {"dev/SIM": 1}
    assert acks.got == [("dev/SIM", 1, 5, 2, False)]


async def test_redelivered_batch_is_acked_as_duplicate_and_not_stored_twice() -> None:
    sink = MemorySink()
    pipe, _, _ = await make(sink)
    acks = Acks()
    await pipe.submit("dev/SIM", 1, "SIM", ticks(3), Counter(), acks)
    await pipe.stop()
    # a new bridge process over the same store: the mark survived with the ticks
    pipe2, _, _ = await make(sink)
    await pipe2.submit("dev/SIM", 1, "SIM", ticks(3), Counter(), acks)
    await pipe2.submit("dev/SIM", 2, "SIM", ticks(2, start=1_700_000_001_000), Counter(), acks)
    await pipe2.stop()
    assert len(sink.ticks) == 5
    assert acks.got[1] == ("dev/SIM", 1, 0, 0, True)
    assert acks.got[2] == ("dev/SIM", 2, 2, 0, False)


async def test_batch_resent_while_still_in_flight_is_stored_once_and_acked_after_the_write() -> None:
    sink = MemorySink()
    pipe, _, _ = await make(sink, flush_ms=10_000)
    acks = Acks()
    await pipe.submit("dev/SIM", 1, "SIM", ticks(3), Counter(), acks)
    await pipe.submit("dev/SIM", 1, "SIM", ticks(3), Counter(), acks)
    assert acks.got == []
    await pipe.stop()
    assert len(sink.ticks) == 3
    assert sorted(a[4] for a in acks.got) == [False, True]


async def test_failed_store_write_is_retried_and_nothing_is_acked_before_it_lands() -> None:
    sink = MemorySink()
    sink.fail_next = 2
    pipe, _, _ = await make(sink)
    acks = Acks()
    await pipe.submit("dev/SIM", 1, "SIM", ticks(4), Counter(), acks)
    for _ in range(200):
        if acks.got:
            break
        await asyncio.sleep(0.01)
    await pipe.stop()
    assert acks.got == [("dev/SIM", 1, 4, 0, False)]
    assert len(sink.ticks) == 4
    assert pipe.healthy


async def test_large_batches_flush_without_waiting_for_the_timer() -> None:
    sink = MemorySink()
    pipe, _, _ = await make(sink, flush_ms=60_000, flush_ticks=100)
    acks = Acks()
    await pipe.submit("dev/SIM", 1, "SIM", ticks(150), Counter(), acks)
    for _ in range(200):
        if acks.got:
            break
        await asyncio.sleep(0.01)
    assert acks.got == [("dev/SIM", 1, 150, 0, False)]
    await pipe.stop()


async def test_small_batch_is_acked_by_the_flush_timer_without_more_traffic() -> None:
    sink = MemorySink()
    pipe, _, _ = await make(sink, flush_ms=20, flush_ticks=1_000_000)
    acks = Acks()
    await pipe.submit("dev/SIM", 1, "SIM", ticks(1), Counter(), acks)
    for _ in range(300):
        if acks.got:
            break
        await asyncio.sleep(0.01)
    assert acks.got == [("dev/SIM", 1, 1, 0, False)]
    await pipe.stop()
