"""Crash recovery of the embedded store: a real child process writes, then dies mid-way with `os._exit`.

The parent reopens the same directory and checks the ingest-mark contract: a sequence is reported if and
only if its ticks are stored, and every tick is stored exactly once after the bridge's redelivery.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path

import pytest
from tickstore_helpers import make_ticks

from aitrading.common.errors import TemporaryError
from aitrading.storage.ticks import ChDBTickStore
from aitrading.storage.ticks._core import Columns, TickCore
from aitrading.storage.ticks.chdb_store import ChDBDriver

CHILD = textwrap.dedent(
    """
    import asyncio, os, sys
    sys.path.insert(0, sys.argv[3])
    from tickstore_helpers import make_ticks
    from aitrading.storage.ticks import ChDBTickStore
    from aitrading.storage.ticks.chdb_store import ChDBDriver

    path, mode = sys.argv[1], sys.argv[2]

    def torn_insert(self, table, columns, types):
        half = {name: values[: len(values) // 2] for name, values in columns.items()}
        original(self, table, half, types)  # the first part reaches the disk, then the process dies
        os._exit(9)

    original = ChDBDriver.insert

    async def main():
        store = ChDBTickStore(path)
        await store.start()
        await store.write_ticks(make_ticks(100), {"agent": 1})
        if mode == "torn":
            ChDBDriver.insert = torn_insert
        # the second batch spans a month boundary, so it lands in two partitions (two parts)
        await store.write_ticks(make_ticks(50, start_ms=1_706_745_599_000, step_ms=100), {"agent": 2, "b": 9})
        os._exit(9)  # "after_write": die before any checkpoint or orderly stop

    asyncio.run(main())
    """
)


def _crash_child(path: Path, mode: str) -> None:
    here = str(Path(__file__).parent)
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(path), mode, here], capture_output=True, timeout=120, check=False
    )
    assert result.returncode == 9, result.stderr.decode()[-2000:]


@pytest.mark.slow
async def test_a_crash_after_the_write_keeps_ticks_and_marks_together(tmp_path: Path) -> None:
    path = tmp_path / "chdb"
    _crash_child(path, "after_write")

    store = ChDBTickStore(path)
    await store.start()
    try:
        assert await store.durable_marks() == {"agent": 2, "b": 9}
        assert await store.count_ticks() == 150
        # the bridge drops the redelivered batch 2; new data continues the write order
        await store.write_ticks(make_ticks(1, start_ms=1_706_745_599_000), {"agent": 3})
        got = await store.query_ticks("demo", "EURUSD", 1_706_745_599_000, 1_706_745_599_001)
        assert len(got) == 2
        assert await store.durable_marks() == {"agent": 3, "b": 9}
    finally:
        await store.stop()


@pytest.mark.slow
async def test_a_torn_write_is_removed_so_its_redelivery_is_stored_exactly_once(tmp_path: Path) -> None:
    path = tmp_path / "chdb"
    _crash_child(path, "torn")

    store = ChDBTickStore(path)
    await store.start()
    try:
        assert await store.durable_marks() == {"agent": 1}
        assert await store.count_ticks() == 100

        redelivered = make_ticks(50, start_ms=1_706_745_599_000, step_ms=100)
        await store.write_ticks(redelivered, {"agent": 2, "b": 9})

        assert await store.count_ticks() == 150
        assert await store.query_ticks("demo", "EURUSD", 1_706_745_599_000, 2**62) == redelivered
        assert await store.durable_marks() == {"agent": 2, "b": 9}
    finally:
        await store.stop()


def test_marks_are_checkpointed_every_n_writes_and_recovered_past_the_checkpoint(tmp_path: Path) -> None:
    driver = ChDBDriver(str(tmp_path / "chdb"))
    try:
        core = TickCore(driver, checkpoint_every=2)
        core.create_schema()
        for seq in range(1, 4):
            core.write_ticks(make_ticks(3, start_ms=seq * 1000), {"a": seq})

        table = driver.columns("SELECT src, max(seq) FROM tick_marks GROUP BY src ORDER BY src")
        assert table == [["", "a"], [7, 2]]  # watermark after writes 1 and 2 (ordinals 1..6), mark 2

        reopened = TickCore(driver)  # as a new process would: it must find write 3 past the checkpoint
        assert reopened.durable_marks() == {"a": 3}
        assert reopened.write_ticks(make_ticks(1), {"a": 4}) == 1
        assert reopened.durable_marks() == {"a": 4}
    finally:
        driver.close()


async def test_retrying_a_write_that_failed_after_landing_stores_it_once(
    chdb_store: ChDBTickStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    driver = chdb_store._core.driver  # type: ignore[union-attr]  # started, so the core exists
    real_insert = driver.insert

    def insert_then_lose_the_answer(table: str, columns: Columns, types: Sequence[str]) -> None:
        real_insert(table, columns, types)
        monkeypatch.setattr(driver, "insert", real_insert)
        raise ConnectionResetError("the answer was lost after the database committed")

    monkeypatch.setattr(driver, "insert", insert_then_lose_the_answer)
    batch = make_ticks(20)

    with pytest.raises(TemporaryError, match="answer was lost"):
        await chdb_store.write_ticks(batch, {"agent": 1})
    assert await chdb_store.write_ticks(batch, {"agent": 1}) == 0  # the bridge's retry

    assert await chdb_store.count_ticks() == 20
    assert await chdb_store.durable_marks() == {"agent": 1}
