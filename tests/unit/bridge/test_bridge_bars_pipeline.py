"""Bars in the ingest pipeline: published on `md.bar.*`, stored after their ticks, repaired on restart."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence

from fakes import MemorySink
from test_bridge_bars import DIGITS, FEED, POINT, SYMBOL, digits, latest, resample_bars, stream

from aitrading.bridge.bars import BarBuilder
from aitrading.bridge.pipeline import IngestPipeline
from aitrading.common.bus import MemoryBus, Message
from aitrading.common.clock import LiveClock
from aitrading.model.ids import bar_subject
from aitrading.model.market import Bar, Tick, Timeframe
from aitrading.storage.ticks import ChDBTickStore

FAR_FUTURE_MS = 4_000_000_000_000
BarKey = tuple[str, str, int, int]


class BarSink(MemorySink):
    """A memory sink that also stores bars and aggregates them from its ticks like the tick store.

    Every `write_bars` checks the pipeline's promise: a bar is written only once the ticks it holds are
    stored, so it equals the aggregate of the stored ticks of its period at that moment.
    """

    def __init__(self) -> None:
        super().__init__()
        self.bars: dict[BarKey, Bar] = {}
        self.hang_bars = False
        self.hung = asyncio.Event()

    async def write_bars(self, bars: Sequence[Bar]) -> int:
        if self.hang_bars:  # the process dies in the middle of the flush
            self.hung.set()
            await asyncio.Event().wait()
        batch = latest(bars)
        for key, bar in batch.items():
            tf = Timeframe(bar.timeframe)
            start = bar.time * 1000
            stored = self._aggregate(tf, start, start + tf.seconds * 1000, POINT)
            assert stored == [bar], f"bar {key} written before its ticks were stored"
        self.bars.update(batch)
        return len(batch)

    async def aggregate_bars(
        self, feed: str, symbol: str, timeframe: Timeframe, from_ms: int, to_ms: int, point_raw: int
    ) -> list[Bar]:
        return self._aggregate(timeframe, from_ms, to_ms, point_raw)

    def _aggregate(self, tf: Timeframe, from_ms: int, to_ms: int, point_raw: int) -> list[Bar]:
        ticks = [t for t in self.ticks if from_ms <= t.time_msc < to_ms]
        return resample_bars(ticks, tf, point_raw)


class WriteOnlyBarSink(MemorySink):
    def __init__(self) -> None:
        super().__init__()
        self.bars: dict[BarKey, Bar] = {}

    async def write_bars(self, bars: Sequence[Bar]) -> int:
        self.bars.update(latest(bars))
        return len(bars)


class Published:
    def __init__(self) -> None:
        self.got: list[tuple[str, Message]] = []

    async def __call__(self, subject: str, msg: Message) -> None:
        self.got.append((subject, msg))

    def bars(self) -> dict[BarKey, Bar]:
        return latest(m for _, m in self.got if isinstance(m, Bar))


async def nothing(src: str, seq: int, accepted: int, rejected: int, duplicate: bool) -> None:
    return None


async def make(
    sink: MemorySink, *, flush_ms: int = 5, bar_clock_ms: int = 0, bar_grace_ms: int = 2_000
) -> tuple[IngestPipeline, Published]:
    bus = MemoryBus()
    await bus.connect()
    published = Published()
    await bus.subscribe("md.bar.>", published)
    pipe = IngestPipeline(
        bus,
        sink,
        LiveClock(),
        flush_ms=flush_ms,
        bars=BarBuilder(digits_of=digits),
        bar_clock_ms=bar_clock_ms,
        bar_grace_ms=bar_grace_ms,
    )
    await pipe.start()
    return pipe, published


async def feed(pipe: IngestPipeline, ticks: Sequence[Tick], first_seq: int = 1, size: int = 200) -> int:
    seq = first_seq
    for i in range(0, len(ticks), size):
        await pipe.submit("dev/SIM", seq, FEED, list(ticks[i : i + size]), Counter(), nothing)
        seq += 1
    return seq


def reference(ticks: Sequence[Tick]) -> dict[BarKey, Bar]:
    return latest(b for tf in Timeframe for b in resample_bars(ticks, tf))


async def test_closed_bars_are_published_on_their_subjects_and_stored_after_their_ticks() -> None:
    ticks = stream(11, n=3_000)
    sink = BarSink()
    pipe, published = await make(sink)
    await feed(pipe, ticks)
    await pipe.close_bars(FAR_FUTURE_MS)
    await pipe.stop()
    want = reference(ticks)
    assert sink.bars == want
    assert published.bars() == want
    for subject, msg in published.got:
        assert isinstance(msg, Bar)
        assert subject == bar_subject(msg.feed, msg.symbol, msg.timeframe)
    assert {s.rsplit(".", 1)[1] for s, _ in published.got} == {tf.name for tf in Timeframe}
    assert published.got[0][0].startswith(f"md.bar.{FEED}.{SYMBOL}.")


async def test_ticks_are_published_on_tick_subjects() -> None:
    sink = BarSink()
    bus = MemoryBus()
    await bus.connect()
    seen = Published()
    await bus.subscribe("md.tick.>", seen)
    pipe = IngestPipeline(bus, sink, LiveClock(), flush_ms=5, bar_clock_ms=0)
    await pipe.start()
    tick = Tick(feed="BRK-1", symbol="US30#", time_msc=1_704_153_600_000, bid=10, ask=11)
    await pipe.submit("dev/BRK-1", 1, "BRK-1", [tick], Counter(), nothing)
    await pipe.stop()
    assert seen.got == [("md.tick.BRK-1.US30_", tick)]


async def test_bridge_restart_rebuilds_its_first_bars_from_the_stored_ticks() -> None:
    ticks = stream(12, n=3_000)
    cut = 1_700
    sink = BarSink()
    pipe, _ = await make(sink)
    seq = await feed(pipe, ticks[:cut])
    await pipe.stop()  # the forming bars die with the process
    pipe, published = await make(sink)
    await feed(pipe, ticks[cut:], seq)
    await pipe.close_bars(FAR_FUTURE_MS)
    await pipe.stop()
    assert sink.bars == reference(ticks)
    # what the second process published of the bars it first saw is the rebuilt, whole bar
    first = {k: b for k, b in published.bars().items() if b.time * 1000 <= ticks[cut].time_msc}
    assert first
    assert all(b == reference(ticks)[k] for k, b in first.items())


async def test_bars_closed_but_not_written_when_the_bridge_died_are_rebuilt_after_restart() -> None:
    ticks = stream(13, n=3_000, late_share=0.0)
    cut, size = 1_500, 50
    assert ticks[cut].time_msc - ticks[cut - size].time_msc < 1_800_000  # the last batch is recent
    sink = BarSink()
    pipe, _ = await make(sink)
    last = cut // size
    acked: list[int] = []
    settled = asyncio.Event()

    async def ack(src: str, seq: int, accepted: int, rejected: int, duplicate: bool) -> None:
        acked.append(seq)
        if len(acked) == last - 1:
            settled.set()

    for seq in range(1, last + 1):
        if seq == last:  # the process will die while writing the bars of the last batch, its ticks stored
            await asyncio.wait_for(settled.wait(), 5)
            sink.hang_bars = True
        part = list(ticks[(seq - 1) * size : seq * size])
        await pipe.submit("dev/SIM", seq, FEED, part, Counter(), ack)
    await asyncio.wait_for(sink.hung.wait(), 5)
    assert sink.marks == {"dev/SIM": last}
    assert last not in acked
    for task in (pipe._task, pipe._clock_task):
        if task is not None:
            task.cancel()
    sink.hang_bars = False
    assert set(reference(ticks[:cut])) - set(sink.bars) - set(latest(pipe.bars.forming(FEED, SYMBOL)))
    pipe, _ = await make(sink)
    await feed(pipe, ticks[cut:], last + 1)  # the batch that was stored is not resent
    await pipe.close_bars(FAR_FUTURE_MS)
    await pipe.stop()
    assert sink.bars == reference(ticks)


async def test_quiet_market_bar_is_closed_by_the_bar_clock_without_more_ticks() -> None:
    now = LiveClock().now_ms()
    minute = now - now % 60_000 - 120_000  # two minutes ago: over, grace included
    ticks = [
        Tick(feed=FEED, symbol=SYMBOL, time_msc=minute + i * 1_000, bid=1_100_000_000 + i, ask=1_100_020_000)
        for i in range(3)
    ]
    sink = BarSink()
    pipe, published = await make(sink, bar_clock_ms=10, bar_grace_ms=2_000)
    await feed(pipe, ticks)
    for _ in range(300):
        if any(k[2] == Timeframe.M1 for k in sink.bars):
            break
        await asyncio.sleep(0.01)
    await pipe.stop()
    m1 = sink.bars[(FEED, SYMBOL, int(Timeframe.M1), minute // 1000)]
    assert (m1.open, m1.close, m1.tick_volume, m1.spread) == (1_100_000_000, 1_100_000_002, 3, 2)
    assert published.bars()[(FEED, SYMBOL, int(Timeframe.M1), minute // 1000)] == m1


async def test_store_that_cannot_aggregate_does_not_get_the_possibly_partial_first_bars() -> None:
    ticks = stream(14, n=1_500, late_share=0.0)
    sink = WriteOnlyBarSink()
    pipe, published = await make(sink)
    await feed(pipe, ticks)
    await pipe.stop()
    first_m1 = ticks[0].time_msc // 60_000 * 60
    key = (FEED, SYMBOL, int(Timeframe.M1), first_m1)
    assert key in published.bars()
    assert key not in sink.bars
    later = {k: b for k, b in sink.bars.items() if k[2] == Timeframe.M1}
    assert later
    assert all(b == reference(ticks)[k] for k, b in later.items())


# --- against the real tick store ----------------------------------------------------------------------------


async def test_stored_bars_equal_the_tick_stores_own_aggregate_bars_across_a_restart(
    chdb_store: ChDBTickStore,
) -> None:
    ticks = stream(15, n=4_000)
    cut = 2_300

    async def run(part: Sequence[Tick], seq: int, close: bool) -> int:
        bus = MemoryBus()
        await bus.connect()
        pipe = IngestPipeline(
            bus, chdb_store, LiveClock(), flush_ms=5, bars=BarBuilder(digits_of=digits), bar_clock_ms=0
        )
        await pipe.start()
        seq = await feed(pipe, part, seq)
        if close:
            await pipe.close_bars(FAR_FUTURE_MS)
        await pipe.stop()
        return seq

    seq = await run(ticks[:cut], 1, close=False)
    await run(ticks[cut:], seq, close=True)
    lo, hi = min(t.time_msc for t in ticks), max(t.time_msc for t in ticks) + 1
    point = 10 ** (9 - DIGITS)
    for tf in Timeframe:
        stored = await chdb_store.query_bars(FEED, SYMBOL, tf, 0, hi // 1000 + 86_400, limit=100_000)
        built = await chdb_store.aggregate_bars(
            FEED, SYMBOL, tf, lo - lo % 86_400_000, hi + 86_400_000, point
        )
        assert stored == built, tf.name
        assert stored == resample_bars(ticks, tf)
