"""The agent's durable buffer keeps batches and poll cursors together across crashes."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from aitrading.agent.buffer import Cursor, DurableBuffer
from aitrading.common.bus.codec import decode
from aitrading.common.errors import OperationalError
from aitrading.model.market import Tick
from aitrading.model.wire import TickBatchFrame

SRC = "dev-1/Broker-Demo"


def ticks(n: int, start_ms: int = 1_700_000_000_000, symbol: str = "EURUSD") -> list[Tick]:
    return [
        Tick(
            feed="Broker-Demo",
            symbol=symbol,
            time_msc=start_ms + i,
            bid=1_081_230_000 + i,
            ask=1_081_250_000 + i,
        )
        for i in range(n)
    ]


def test_sequence_numbers_start_at_one_and_frames_decode_to_the_batch(tmp_path: Path) -> None:
    buf = DurableBuffer(tmp_path / "b.sqlite")
    batch = ticks(3)

    assert buf.append(SRC, "Broker-Demo", batch, {"EURUSD": Cursor(batch[-1].time_msc, 1)}) == 1
    assert buf.append(SRC, "Broker-Demo", ticks(2, 1_700_000_001_000), {}) == 2

    (seq, frame), _ = buf.unacked(SRC)
    decoded = decode(frame)
    assert seq == 1
    assert decoded == TickBatchFrame(src=SRC, seq=1, feed="Broker-Demo", ticks=batch)
    assert buf.depth() == 2
    assert buf.depth_ticks() == 5


def test_batches_and_cursors_survive_reopening_the_file(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite"
    buf = DurableBuffer(path)
    for i in range(3):
        buf.append(
            SRC, "Broker-Demo", ticks(2, 1_700_000_000_000 + 10 * i), {"EURUSD": Cursor(1_700 + i, i + 1)}
        )
    buf.ack(SRC, 1)
    before = buf.unacked(SRC)
    buf.close()

    again = DurableBuffer(path)

    assert again.unacked(SRC) == before
    assert (again.depth(), again.depth_ticks()) == (2, 4)
    assert [seq for seq, _ in before] == [2, 3]
    assert again.cursor(SRC, "EURUSD") == Cursor(1_702, 3)
    assert again.next_seq(SRC) == 4
    assert again.acked(SRC) == 1


def test_a_killed_process_leaves_every_committed_batch_and_cursor(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite"
    script = textwrap.dedent(
        f"""
        import os, signal
        from aitrading.agent.buffer import Cursor, DurableBuffer
        from aitrading.model.market import Tick
        buf = DurableBuffer({str(path)!r})
        for i in range(5):
            t = Tick(feed="F", symbol="EURUSD", time_msc=1000 + i, bid=1, ask=2)
            buf.append({SRC!r}, "F", [t], {{"EURUSD": Cursor(1000 + i, 1)}})
        buf.ack({SRC!r}, 2)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True, timeout=60)
    assert proc.returncode == -9, proc.stderr.decode()

    buf = DurableBuffer(path)

    assert [seq for seq, _ in buf.unacked(SRC)] == [3, 4, 5]
    assert buf.cursor(SRC, "EURUSD") == Cursor(1004, 1)
    assert buf.next_seq(SRC) == 6


def test_a_failed_append_stores_neither_the_batch_nor_the_cursor(tmp_path: Path) -> None:
    buf = DurableBuffer(tmp_path / "b.sqlite")
    buf.append(SRC, "Broker-Demo", ticks(1), {"EURUSD": Cursor(10, 1)})

    bad = {"EURUSD": Cursor(20, 1), "GBPUSD": Cursor("not a number", 1)}  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="invalid literal"):
        buf.append(SRC, "Broker-Demo", ticks(1, 20), bad)

    assert [seq for seq, _ in buf.unacked(SRC)] == [1]
    assert buf.cursor(SRC, "EURUSD") == Cursor(10, 1)
    assert buf.next_seq(SRC) == 2


def test_acks_are_cumulative_and_a_stale_ack_changes_nothing(tmp_path: Path) -> None:
    buf = DurableBuffer(tmp_path / "b.sqlite")
    for i in range(5):
        buf.append(SRC, "Broker-Demo", ticks(1, i), {})

    assert buf.ack(SRC, 3) == 3
    assert [seq for seq, _ in buf.unacked(SRC)] == [4, 5]
    assert buf.ack(SRC, 2) == 0
    assert buf.acked(SRC) == 3
    assert buf.ack(SRC, 5) == 2
    assert buf.unacked(SRC) == []
    assert buf.depth() == 0
    assert buf.append(SRC, "Broker-Demo", ticks(1), {}) == 6


def test_sources_are_numbered_and_acked_independently(tmp_path: Path) -> None:
    buf = DurableBuffer(tmp_path / "b.sqlite")
    other = "dev-1/Other-Live"
    buf.append(SRC, "Broker-Demo", ticks(1), {"EURUSD": Cursor(1, 1)})
    buf.append(SRC, "Broker-Demo", ticks(1), {})
    assert buf.append(other, "Other-Live", ticks(1), {"EURUSD": Cursor(9, 2)}) == 1

    buf.ack(SRC, 2)

    assert buf.depth(SRC) == 0
    assert [seq for seq, _ in buf.unacked(other)] == [1]
    assert buf.cursor(other, "EURUSD") == Cursor(9, 2)
    assert buf.cursor(SRC, "EURUSD") == Cursor(1, 1)
    assert buf.sources() == [SRC, other]


def test_drop_through_what_the_bridge_holds_and_never_reuse_its_numbers(tmp_path: Path) -> None:
    buf = DurableBuffer(tmp_path / "b.sqlite")
    for i in range(3):
        buf.append(SRC, "Broker-Demo", ticks(1, i), {})

    assert buf.drop_through(SRC, 2) == 2
    assert [seq for seq, _ in buf.unacked(SRC)] == [3]

    # The bridge knows seq 40 (this buffer file was replaced): batch 3 cannot be what the bridge stored,
    # so it is renumbered after the bridge's mark (not dropped: that would lose its ticks) and new
    # batches continue after it.
    assert buf.drop_through(SRC, 40) == 0
    [(seq, frame)] = buf.unacked(SRC)
    assert seq == 41
    batch = decode(frame)
    assert isinstance(batch, TickBatchFrame)
    assert batch.seq == 41
    assert batch.ticks == ticks(1, 2)
    assert buf.append(SRC, "Broker-Demo", ticks(1), {}) == 42


def test_pending_pages_after_a_sequence_number(tmp_path: Path) -> None:
    buf = DurableBuffer(tmp_path / "b.sqlite")
    for i in range(6):
        buf.append(SRC, "Broker-Demo", ticks(i + 1, i * 100), {})

    page = buf.pending(SRC, after=2, limit=2)

    assert [(b.seq, b.ticks) for b in page] == [(3, 3), (4, 4)]


def test_init_cursors_keeps_existing_cursors(tmp_path: Path) -> None:
    buf = DurableBuffer(tmp_path / "b.sqlite")
    buf.append(SRC, "Broker-Demo", ticks(1), {"EURUSD": Cursor(5, 2)})

    buf.init_cursors(SRC, {"EURUSD": Cursor(100, 0), "GBPUSD": Cursor(100, 0)})

    assert buf.cursors(SRC) == {"EURUSD": Cursor(5, 2), "GBPUSD": Cursor(100, 0)}


def test_an_empty_batch_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least one tick"):
        DurableBuffer(tmp_path / "b.sqlite").append(SRC, "Broker-Demo", [], {})


def test_a_second_agent_cannot_open_a_buffer_in_use(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite"
    first = DurableBuffer(path)

    with pytest.raises(OperationalError, match="in use by another agent"):
        DurableBuffer(path)

    first.close()
    DurableBuffer(path).close()


def test_the_buffer_is_wal_with_full_sync(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite"
    DurableBuffer(path).close()

    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()
    # synchronous is per connection; check the buffer's own connection.
    buf = DurableBuffer(path)
    assert buf._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    buf.close()
