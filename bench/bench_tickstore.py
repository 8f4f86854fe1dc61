"""Tick store benchmark: which chDB insert path is fastest, and what the store does end to end.

Run: `.venv/bin/python -m bench.bench_tickstore [--ticks 50000] [--batches 6]`

Part 1 inserts the same batches of `Tick`s into the store's `ticks` table (same DDL, fsync on) through each
insert path chDB offers, timing the whole way from `list[Tick]` (encode + insert), round-robin over the
paths, for big batches (`--ticks`) and small ones (100 ticks):

- `values`: inline `INSERT ... VALUES (...)` SQL text
- `csv`: `send_insert(..., "CSV")` with the rows as CSV text
- `native`: `send_insert(..., "Native")` with ClickHouse's columnar Native format built from numpy
- `arrow-stream`: `send_insert(..., "ArrowStream")` with an Arrow IPC stream
- `python-pandas`: `INSERT ... SELECT * FROM Python(df)` over a pandas DataFrame
- `python-arrow`: `INSERT ... SELECT * FROM Python(table)` over a pyarrow Table (the store's path)

Part 2 drives `ChDBTickStore` itself: `write_ticks` with ingest marks, `query_ticks` pages of 10,000,
`aggregate_bars` (M1 over everything). Figures only; nothing passes or fails on time.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd  # type: ignore[import-untyped]  # no pandas-stubs in the environment
import pyarrow as pa  # type: ignore[import-untyped]  # pyarrow ships no type information

from aitrading.model.market import Tick, Timeframe
from aitrading.storage.ticks import ChDBTickStore, next_tick_cursor
from aitrading.storage.ticks import sql as ticks_sql
from aitrading.storage.ticks._core import TickCore, arrow_table

START_MS = 1_704_067_200_000


def make_ticks(n: int, offset: int = 0) -> list[Tick]:
    rng = np.random.default_rng(offset)
    steps = rng.integers(-3, 4, n).cumsum()
    gaps = rng.integers(0, 400, n).cumsum()
    return [
        Tick(
            feed="MetaQuotes-Demo",
            symbol=("EURUSD", "GBPUSD", "USDJPY")[i % 3],
            time_msc=START_MS + offset * 10_000_000 + int(gaps[i]),
            bid=1_085_000_000 + 10_000 * int(steps[i]),
            ask=1_085_020_000 + 10_000 * int(steps[i]),
            volume=i,
            flags=6,
        )
        for i in range(n)
    ]


def columns_of(ticks: list[Tick], first_n: int) -> dict[str, Any]:
    """The columns the store writes, via the store's own encoder."""
    cols: dict[str, Any] = TickCore._tick_columns(ticks)
    count = len(ticks)
    cols["n"] = np.arange(first_n, first_n + count, dtype=np.uint64)
    cols["wid"] = np.full(count, first_n, dtype=np.uint64)
    cols["wn"] = np.full(count, count, dtype=np.uint32)
    cols["wmarks"] = [json.dumps({"agent": first_n})] + [""] * (count - 1)
    return cols


def _varint(x: int) -> bytes:
    out = bytearray()
    while True:
        byte, x = x & 0x7F, x >> 7
        out.append(byte | (0x80 if x else 0))
        if not x:
            return bytes(out)


def _native_strings(values: list[str]) -> bytes:
    cache: dict[str, bytes] = {}
    parts = []
    for v in values:
        enc = cache.get(v)
        if enc is None:
            raw = v.encode()
            enc = cache[v] = _varint(len(raw)) + raw
        parts.append(enc)
    return b"".join(parts)


def native_block(cols: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    buf.write(_varint(len(cols)) + _varint(len(cols["n"])))
    for (name, values), ch_type in zip(cols.items(), ticks_sql.TICK_INSERT_TYPES, strict=True):
        buf.write(_varint(len(name)) + name.encode() + _varint(len(ch_type)) + ch_type.encode())
        buf.write(_native_strings(values) if ch_type == "String" else np.asarray(values).tobytes())
    return buf.getvalue()


def insert_paths(session: Any, table: str) -> dict[str, Callable[[list[Tick], int], None]]:
    names = ", ".join(ticks_sql.TICK_INSERT_COLUMNS)
    head = f"INSERT INTO {table} ({names})"

    def values(ticks: list[Tick], first_n: int) -> None:
        cols = columns_of(ticks, first_n)
        rows = zip(*(c.tolist() if isinstance(c, np.ndarray) else c for c in cols.values()), strict=True)

        def lit(v: object) -> str:
            return "'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'" if isinstance(v, str) else str(v)

        session.query(head + " VALUES " + ",".join("(" + ",".join(map(lit, r)) + ")" for r in rows), "Null")

    def csv(ticks: list[Tick], first_n: int) -> None:
        text = pd.DataFrame(columns_of(ticks, first_n)).to_csv(header=False, index=False)
        with session.send_insert(head, "CSV") as ins:
            ins.append(text)
            ins.finish()

    def native(ticks: list[Tick], first_n: int) -> None:
        with session.send_insert(head, "Native") as ins:
            ins.append(native_block(columns_of(ticks, first_n)))
            ins.finish()

    def arrow_stream(ticks: list[Tick], first_n: int) -> None:
        tbl = arrow_table(columns_of(ticks, first_n), ticks_sql.TICK_INSERT_TYPES)
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, tbl.schema) as writer:
            writer.write_table(tbl)
        with session.send_insert(head, "ArrowStream") as ins:
            ins.append(sink.getvalue().to_pybytes())
            ins.finish()

    def python_pandas(ticks: list[Tick], first_n: int) -> None:
        frame = pd.DataFrame(columns_of(ticks, first_n))  # noqa: F841 - Python() finds it by name
        session.query(f"{head} SELECT * FROM Python(frame)", "Null")

    def python_arrow(ticks: list[Tick], first_n: int) -> None:
        data = arrow_table(columns_of(ticks, first_n), ticks_sql.TICK_INSERT_TYPES)  # noqa: F841
        session.query(f"{head} SELECT * FROM Python(data)", "Null")

    return {
        "values": values,
        "csv": csv,
        "native": native,
        "arrow-stream": arrow_stream,
        "python-pandas": python_pandas,
        "python-arrow": python_arrow,
    }


def compare_insert_paths(root: Path, sizes: list[int], repeats: int) -> None:
    """Time every path on the same batches, round-robin so background load hits them all alike."""
    from chdb.session import Session

    session: Any = Session(str(root / "raw"))  # type: ignore[no-untyped-call]  # chDB is untyped
    try:
        for n in sizes:
            batches = [make_ticks(n, offset=i) for i in range(repeats)]
            paths = insert_paths(session, "x")
            for name in paths:
                table = f"ticks_{name.replace('-', '_')}_{n}"
                session.query(ticks_sql.CREATE_TICKS.replace("EXISTS ticks", f"EXISTS {table}"), "Null")
            times: dict[str, list[float]] = {name: [] for name in paths}
            for i, batch in enumerate(batches):
                for name in paths:
                    fn = insert_paths(session, f"ticks_{name.replace('-', '_')}_{n}")[name]
                    t0 = time.perf_counter()
                    fn(batch, 1 + i * n)
                    times[name].append(time.perf_counter() - t0)
            print(
                f"insert paths: {n:,} ticks per INSERT, {repeats} rounds, fsync on, from list[Tick] to stored"
            )
            for name, samples in times.items():
                table = f"ticks_{name.replace('-', '_')}_{n}"
                stored = int(session.query(f"SELECT count() FROM {table}", "CSV").bytes())
                assert stored == n * repeats, (name, stored)
                best, median = min(samples), statistics.median(samples)
                print(
                    f"  {name:<14} best {best * 1000:7.1f} ms {n / best:>11,.0f} ticks/s"
                    f"   median {median * 1000:7.1f} ms {n / median:>11,.0f} ticks/s"
                )
            medians = {name: statistics.median(samples) for name, samples in times.items()}
            fastest = min(medians, key=medians.__getitem__)
            print(
                f"  fastest by median: {fastest} ({medians['values'] / medians[fastest]:.1f}x inline VALUES)"
            )
    finally:
        session.close()


async def bench_store(root: Path, n: int, batches: int) -> None:
    store = ChDBTickStore(root / "store")
    await store.start()
    try:
        await store.durable_marks()  # recovery (of an empty store) is not part of the write figure
        data = [make_ticks(n, offset=100 + i) for i in range(batches)]
        samples = []
        t_all = time.perf_counter()
        for i, batch in enumerate(data):
            t0 = time.perf_counter()
            await store.write_ticks(batch, {"agent-1": i + 1})
            samples.append(time.perf_counter() - t0)
        overall = n * batches / (time.perf_counter() - t_all)
        median, best = n / statistics.median(samples), n / min(samples)
        print(f"ChDBTickStore.write_ticks, {batches} x {n:,} ticks with marks:")
        print(
            f"  overall {overall:,.0f} ticks/s, median batch {median:,.0f} ticks/s, best {best:,.0f} ticks/s"
        )

        t0 = time.perf_counter()
        got, cursor = 0, None
        while True:
            page = await store.query_ticks("MetaQuotes-Demo", "EURUSD", 0, 2**62, limit=10_000, after=cursor)
            if not page:
                break
            got += len(page)
            cursor = next_tick_cursor(page, cursor)
        elapsed = time.perf_counter() - t0
        print(f"ChDBTickStore.query_ticks: {got:,} ticks in pages of 10,000: {got / elapsed:,.0f} ticks/s")

        t0 = time.perf_counter()
        bars = await store.aggregate_bars("MetaQuotes-Demo", "EURUSD", Timeframe.M1, 0, 2**62, 10_000)
        elapsed = time.perf_counter() - t0
        print(
            f"ChDBTickStore.aggregate_bars: {got:,} ticks -> {len(bars):,} M1 bars in {elapsed * 1000:.1f} ms"
        )

        small = []
        for i in range(50):
            batch = make_ticks(10, offset=1000 + i)
            t0 = time.perf_counter()
            await store.write_ticks(batch, {"agent-2": i + 1})
            small.append(time.perf_counter() - t0)
        print(
            f"ChDBTickStore.write_ticks, batches of 10 ticks: median {statistics.median(small) * 1000:.1f} ms"
        )
    finally:
        await store.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ticks", type=int, default=50_000, help="ticks per batch")
    parser.add_argument("--batches", type=int, default=8, help="batches (rounds) per measurement")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-tickstore-") as tmp:
        compare_insert_paths(Path(tmp), [args.ticks, 100], args.batches)
        asyncio.run(bench_store(Path(tmp), args.ticks, args.batches))


if __name__ == "__main__":
    main()
