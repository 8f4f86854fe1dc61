"""The streamer takes every tick of the terminal exactly once, even across polls, batches and crashes."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest
from agent_fakes import FakeTerminal
from hypothesis import given, settings
from hypothesis import strategies as st

from aitrading.agent.buffer import Cursor, DurableBuffer
from aitrading.agent.streamer import TickStreamer
from aitrading.common.bus.codec import decode
from aitrading.common.clock import TestClock
from aitrading.model.market import Tick
from aitrading.model.wire import TickBatchFrame

FEED = "Broker-Demo"
SRC = f"dev-1/{FEED}"


def streamer(
    term: FakeTerminal,
    buf: DurableBuffer,
    clock: TestClock,
    *,
    batch_max: int = 1000,
    flush_ms: int = 50,
    poll_count: int = 1000,
) -> TickStreamer:
    return TickStreamer(
        term,
        buf,
        src=SRC,
        feed=FEED,
        symbols=list(term.ticks),
        clock=clock,
        batch_max=batch_max,
        flush_ms=flush_ms,
        poll_ms=20,
        poll_count=poll_count,
        offload=False,
    )


def stored(buf: DurableBuffer) -> list[TickBatchFrame]:
    frames = [decode(frame) for _, frame in buf.unacked(SRC)]
    assert all(isinstance(f, TickBatchFrame) for f in frames)
    return frames  # type: ignore[return-value]


def stored_keys(buf: DurableBuffer) -> dict[str, list[tuple[int, int]]]:
    out: dict[str, list[tuple[int, int]]] = {}
    for frame in stored(buf):
        for t in frame.ticks:
            out.setdefault(t.symbol, []).append((t.time_msc, t.bid))
    return out


def pushed_keys(term: FakeTerminal) -> dict[str, list[tuple[int, int]]]:
    return {s: [(r[5], round(r[1] * 1e9)) for r in rows] for s, rows in term.ticks.items() if rows}


async def drain(s: TickStreamer) -> None:
    """Poll until the terminal has nothing new (a few empty polls: a full answer widens the next one)."""
    empty = 0
    while empty < 12:
        empty = 0 if await s.poll_once() else empty + 1
    await s.flush()


async def test_bursts_with_one_millisecond_split_across_polls_are_taken_exactly_once(tmp_path: Path) -> None:
    clock = TestClock()
    t0 = clock.now_ms()
    term = FakeTerminal(("EURUSD", "GBPUSD"))
    buf = DurableBuffer(tmp_path / "b.sqlite")
    s = streamer(term, buf, clock)
    await s.load()

    # Four EURUSD ticks share t0+5, but the terminal has only two of them at the first poll.
    term.push("EURUSD", t0 + 5, 1.08001, 1.08003)
    term.push("EURUSD", t0 + 5, 1.08002, 1.08004)
    term.push("GBPUSD", t0 + 5, 1.26001, 1.26004)
    assert await s.poll_once() == 3
    term.push("EURUSD", t0 + 5, 1.08003, 1.08005)
    term.push("EURUSD", t0 + 5, 1.08004, 1.08006)
    term.push("GBPUSD", t0 + 5, 1.26002, 1.26005)
    assert await s.poll_once() == 3
    assert await s.poll_once() == 0  # nothing new: nothing taken twice
    term.push("EURUSD", t0 + 6, 1.08005, 1.08007)
    term.push("EURUSD", t0 + 6, 1.08006, 1.08008)
    term.push("EURUSD", t0 + 9, 1.08007, 1.08009)
    assert await s.poll_once() == 3
    await s.flush()

    assert stored_keys(buf) == pushed_keys(term)
    assert s.cursor("EURUSD") == Cursor(t0 + 9, 1)
    assert buf.cursor(SRC, "GBPUSD") == Cursor(t0 + 5, 2)


async def test_prices_and_volumes_convert_exactly(tmp_path: Path) -> None:
    clock = TestClock()
    term = FakeTerminal(("XAUUSD",))
    buf = DurableBuffer(tmp_path / "b.sqlite")
    s = streamer(term, buf, clock)
    await s.load()
    term.push("XAUUSD", clock.now_ms() + 1, 2034.17, 2034.52, last=2034.35, volume_real=0.1 + 0.2, flags=30)

    await s.poll_once()
    await s.flush()

    (tick,) = stored(buf)[0].ticks
    assert tick == Tick(
        feed=FEED,
        symbol="XAUUSD",
        time_msc=clock.now_ms() + 1,
        bid=2_034_170_000_000,
        ask=2_034_520_000_000,
        last=2_034_350_000_000,
        volume=30_000_000,
        flags=30,
    )


async def test_full_batches_are_stored_at_once_with_the_cursor_of_their_last_tick(tmp_path: Path) -> None:
    clock = TestClock()
    t0 = clock.now_ms()
    term = FakeTerminal()
    buf = DurableBuffer(tmp_path / "b.sqlite")
    s = streamer(term, buf, clock, batch_max=3)
    await s.load()
    for i, ms in enumerate([1, 1, 2, 2, 2, 3, 4]):
        term.push("EURUSD", t0 + ms, 1.1 + i / 1e5, 1.2)

    await s.poll_once()

    assert [len(f.ticks) for f in stored(buf)] == [3, 3]
    assert buf.cursor(SRC, "EURUSD") == Cursor(t0 + 3, 1)  # the stored cursor ends with the stored ticks
    assert s.cursor("EURUSD") == Cursor(t0 + 4, 1)
    assert s.pending == 1
    await s.flush()
    assert stored_keys(buf) == pushed_keys(term)


async def test_a_crash_loses_only_unstored_ticks_which_are_read_again(tmp_path: Path) -> None:
    clock = TestClock()
    t0 = clock.now_ms()
    term = FakeTerminal()
    path = tmp_path / "b.sqlite"
    buf = DurableBuffer(path)
    s = streamer(term, buf, clock)
    await s.load()
    term.push("EURUSD", t0 + 1, 1.1, 1.2)
    term.push("EURUSD", t0 + 2, 1.11, 1.2)
    await s.poll_once()
    await s.flush()
    term.push("EURUSD", t0 + 2, 1.12, 1.2)
    term.push("EURUSD", t0 + 3, 1.13, 1.2)
    await s.poll_once()  # read, never stored: the process dies here
    buf.close()

    buf = DurableBuffer(path)
    restarted = streamer(term, buf, clock)
    clock.advance(3600)  # restarting takes a while; the cursor, not "now", decides where to resume
    term.push("EURUSD", t0 + 4, 1.14, 1.2)
    await drain(restarted)

    assert stored_keys(buf) == pushed_keys(term)


async def test_a_terminal_that_reads_date_from_to_the_second_still_yields_each_tick_once(
    tmp_path: Path,
) -> None:
    clock = TestClock()
    t0 = clock.now_ms()
    term = FakeTerminal(truncate_to_seconds=True)
    buf = DurableBuffer(tmp_path / "b.sqlite")
    s = streamer(term, buf, clock, poll_count=2)
    await s.load()
    for i in range(7):  # more ticks in the cursor's second than one poll returns
        term.push("EURUSD", t0 + 100 + i // 3, 1.1 + i / 1e5, 1.2)
        await s.poll_once()

    await drain(s)

    assert stored_keys(buf) == pushed_keys(term)


async def test_more_ticks_in_one_millisecond_than_one_poll_returns_are_all_taken(tmp_path: Path) -> None:
    clock = TestClock()
    term = FakeTerminal()
    buf = DurableBuffer(tmp_path / "b.sqlite")
    s = streamer(term, buf, clock, poll_count=2)
    await s.load()
    for i in range(9):
        term.push("EURUSD", clock.now_ms() + 7, 1.1 + i / 1e5, 1.2)

    await drain(s)

    assert stored_keys(buf) == pushed_keys(term)
    assert s.cursor("EURUSD").taken == 9


async def test_a_new_symbol_starts_now_and_that_start_is_stored(tmp_path: Path) -> None:
    clock = TestClock()
    t0 = clock.now_ms()
    term = FakeTerminal()
    term.push("EURUSD", t0 - 5_000, 1.0, 1.1)  # history from before the agent existed
    term.push("EURUSD", t0 + 1, 1.2, 1.3)
    buf = DurableBuffer(tmp_path / "b.sqlite")
    s = streamer(term, buf, clock)

    await s.load()
    assert buf.cursor(SRC, "EURUSD") == Cursor(t0, 0)
    await drain(s)

    assert stored_keys(buf) == {"EURUSD": [(t0 + 1, 1_200_000_000)]}


async def test_a_failed_copy_is_reported_and_the_next_poll_recovers(tmp_path: Path) -> None:
    clock = TestClock()
    term = FakeTerminal()
    buf = DurableBuffer(tmp_path / "b.sqlite")
    s = streamer(term, buf, clock)
    await s.load()
    term.push("EURUSD", clock.now_ms() + 1, 1.1, 1.2)
    term.fail = True

    assert await s.poll_once() == 0
    assert "Call failed" in s.last_error
    term.fail = False
    assert await s.poll_once() == 1


class FlakyBuffer(DurableBuffer):
    """Fails the next `failures` appends, as a full disk would."""

    failures = 0

    def append(self, src: str, feed: str, ticks: Sequence[Tick], cursor_updates: Mapping[str, Cursor]) -> int:
        if self.failures:
            self.failures -= 1
            raise OSError("disk full")
        return super().append(src, feed, ticks, cursor_updates)


async def test_ticks_that_could_not_be_stored_are_read_again(tmp_path: Path) -> None:
    clock = TestClock()
    term = FakeTerminal()
    buf = FlakyBuffer(tmp_path / "b.sqlite")
    s = streamer(term, buf, clock)
    await s.load()
    for i in range(3):
        term.push("EURUSD", clock.now_ms() + i, 1.1 + i / 1e5, 1.2)
    await s.poll_once()
    buf.failures = 1

    with pytest.raises(OSError, match="disk full"):
        await s.flush()
    assert s.pending == 0
    await drain(s)

    assert stored_keys(buf) == pushed_keys(term)


async def test_run_flushes_on_time_and_stores_the_partial_batch_on_stop(tmp_path: Path) -> None:
    clock = TestClock()
    term = FakeTerminal()
    buf = DurableBuffer(tmp_path / "b.sqlite")
    s = streamer(term, buf, clock, flush_ms=10_000)
    task = asyncio.create_task(s.run())
    await asyncio.sleep(0)
    term.push("EURUSD", clock.now_ms() + 1, 1.1, 1.2)
    while s.pending == 0:  # noqa: ASYNC110 - the TestClock loop yields with sleep(0); nothing to await
        await asyncio.sleep(0)
    assert buf.depth() == 0

    s.stop()
    await task

    assert stored_keys(buf) == pushed_keys(term)


@settings(max_examples=120, deadline=None)
@given(
    groups=st.lists(st.tuples(st.integers(0, 2), st.integers(1, 4)), min_size=1, max_size=25),
    cuts=st.lists(st.integers(0, 100), max_size=12),
    events=st.lists(st.sampled_from(["poll", "flush", "crash"]), min_size=1, max_size=30),
    poll_count=st.integers(1, 6),
    batch_max=st.integers(1, 5),
    truncate=st.booleans(),
)
def test_any_schedule_of_arrivals_polls_flushes_and_crashes_stores_every_tick_once(
    groups: list[tuple[int, int]],
    cuts: list[int],
    events: list[str],
    poll_count: int,
    batch_max: int,
    truncate: bool,
) -> None:
    clock = TestClock()
    t0 = clock.now_ms()
    arrivals: list[tuple[str, int, float]] = []
    ms = t0
    for n, (gap, count) in enumerate(groups):
        ms += gap
        symbol = "EURUSD" if n % 3 else "GBPUSD"
        arrivals += [(symbol, ms, 1.0 + (len(arrivals) + k) / 1e5) for k in range(count)]

    async def scenario() -> None:
        term = FakeTerminal(("EURUSD", "GBPUSD"), truncate_to_seconds=truncate)
        buf = DurableBuffer(":memory:")
        s = streamer(term, buf, clock, poll_count=poll_count, batch_max=batch_max)
        await s.load()
        shown = 0
        steps = sorted(c * len(arrivals) // 100 for c in cuts)
        for i, event in enumerate(events):
            target = steps[i] if i < len(steps) else len(arrivals)
            while shown < max(shown, target):
                symbol, t, bid = arrivals[shown]
                term.push(symbol, t, bid, bid + 0.0002)
                shown += 1
            if event == "poll":
                await s.poll_once()
            elif event == "flush":
                await s.flush()
            else:
                s = streamer(term, buf, clock, poll_count=poll_count, batch_max=batch_max)
                await s.load()
        for symbol, t, bid in arrivals[shown:]:
            term.push(symbol, t, bid, bid + 0.0002)
        await drain(s)
        assert stored_keys(buf) == pushed_keys(term)

    asyncio.run(scenario())
