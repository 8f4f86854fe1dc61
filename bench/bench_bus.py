"""Bus benchmark: publish n tiny messages to one counting subscriber, in-process versus NATS.

Run: `.venv/bin/python -m bench.bench_bus [--n 1000000] [--nats-url nats://127.0.0.1:4222]`

The clock runs from the first publish until the subscriber has counted all n messages (or has seen nothing
new for `--stall` seconds, in which case the table says how many arrived). Publisher and subscriber share
one bus, as a service that publishes ticks and consumes its own subjects would. The subject is not covered
by a JetStream stream, so the NATS figure is core NATS pub/sub through nats-py. Figures only; nothing passes
or fails on time.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from rich.console import Console
from rich.table import Table

from aitrading.common.bus import Bus, MemoryBus, Message
from aitrading.common.errors import TemporaryError

DEFAULT_NATS_URL = "nats://127.0.0.1:4222"
SUBJECT = "bench.tick.EURUSD"


class BenchTick(Message, frozen=True):
    """About the size of a real tick: a sequence number and two scaled prices."""

    seq: int
    bid: int
    ask: int


def _make_bus(kind: str, nats_url: str) -> Bus:
    if kind == "memory":
        return MemoryBus(streams=())
    if kind == "nats":
        from aitrading.common.bus.nats import NatsBus

        return NatsBus(nats_url, streams=(), name="bench-bus")
    raise ValueError(f"unknown bus kind {kind!r}")


async def bench_bus(
    kind: str, n: int = 1_000_000, *, nats_url: str = DEFAULT_NATS_URL, stall: float = 5.0
) -> dict[str, Any]:
    """Publish `n` messages and time until one subscriber has received them all.

    Returns `{kind, n, received, seconds, msgs_per_s}`; `msgs_per_s` counts received messages.
    """
    bus = _make_bus(kind, nats_url)
    await bus.connect()
    received = 0
    all_in = asyncio.Event()

    async def count(subject: str, msg: Message) -> None:
        nonlocal received
        received += 1
        if received == n:
            all_in.set()

    try:
        await bus.subscribe("bench.tick.*", count)
        started = time.perf_counter()
        for i in range(n):
            await bus.publish(SUBJECT, BenchTick(seq=i, bid=1_085_000_000 + i, ask=1_085_020_000 + i))
        published = time.perf_counter() - started
        last, last_change = received, time.perf_counter()
        while not all_in.is_set():
            try:
                await asyncio.wait_for(all_in.wait(), timeout=0.1)
            except TimeoutError:
                if received != last:
                    last, last_change = received, time.perf_counter()
                elif time.perf_counter() - last_change > stall:
                    break
        seconds = (time.perf_counter() if all_in.is_set() else last_change) - started
    finally:
        await bus.close()
    return {
        "kind": kind,
        "n": n,
        "received": received,
        "seconds": seconds,
        "publish_seconds": published,
        "msgs_per_s": received / seconds if seconds > 0 else float("inf"),
    }


def _table(results: list[dict[str, Any]]) -> Table:
    table = Table(title="Bus: publish → one subscriber, tiny messages")
    for col in ("bus", "published", "received", "publish s", "total s", "msgs/s", "µs/msg"):
        table.add_column(col, justify="left" if col == "bus" else "right")
    for r in results:
        table.add_row(
            r["kind"],
            f"{r['n']:,}",
            f"{r['received']:,}",
            f"{r['publish_seconds']:.2f}",
            f"{r['seconds']:.2f}",
            f"{r['msgs_per_s']:,.0f}",
            f"{1e6 / r['msgs_per_s']:.2f}" if r["msgs_per_s"] else "-",
        )
    by_kind = {r["kind"]: r for r in results}
    if "memory" in by_kind and "nats" in by_kind and by_kind["nats"]["msgs_per_s"]:
        ratio = by_kind["memory"]["msgs_per_s"] / by_kind["nats"]["msgs_per_s"]
        table.caption = f"memory is {ratio:.1f}× the throughput of nats"
    return table


async def _run(kinds: list[str], n: int, nats_url: str, stall: float) -> list[dict[str, Any]]:
    results = []
    for kind in kinds:
        try:
            results.append(await bench_bus(kind, n, nats_url=nats_url, stall=stall))
        except TemporaryError as exc:
            Console(stderr=True).print(f"[yellow]skipping {kind}: {exc}[/yellow]")
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--n", type=int, default=1_000_000, help="messages to publish per bus")
    parser.add_argument("--nats-url", default=DEFAULT_NATS_URL)
    parser.add_argument("--kinds", default="memory,nats", help="comma-separated: memory, nats")
    parser.add_argument("--stall", type=float, default=5.0, help="give up after this long without progress")
    args = parser.parse_args(argv)
    results = asyncio.run(_run(args.kinds.split(","), args.n, args.nats_url, args.stall))
    Console().print(_table(results))


if __name__ == "__main__":
    main()
