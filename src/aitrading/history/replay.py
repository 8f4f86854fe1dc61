"""History files as a live feed: read a file's ticks and pace them into the present.

The simulated terminal replays them (`simulator.replay_file`), so the PC agent, the bridge and everything
downstream see recorded market data exactly as they would see a live terminal (paper trading, demos).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import tzinfo
from pathlib import Path

import msgspec

from aitrading.history._text import TextSource
from aitrading.history.formats import TickFormat, TickParser
from aitrading.model.market import Tick

__all__ = ["iter_ticks", "paced"]


def iter_ticks(
    path: Path | str, fmt: TickFormat | str, *, feed: str, symbol: str, tz: tzinfo | str | None = None
) -> Iterator[Tick]:
    """Yield the good ticks of a history file in file order (bad rows are skipped)."""
    parser = TickParser(fmt, feed=feed, symbol=symbol, zone=tz)
    for _, tick in parser.ticks(TextSource(Path(path), None).lines()):
        yield tick


def paced(ticks: Iterable[Tick], start_ms: int, speed: float = 1.0) -> Iterator[Tick]:
    """Shift `ticks` so the first lands at `start_ms`, keeping their spacing divided by `speed`."""
    if speed <= 0:
        raise ValueError(f"speed must be positive, got {speed}")
    first: int | None = None
    for tick in ticks:
        if first is None:
            first = tick.time_msc
        yield msgspec.structs.replace(tick, time_msc=start_ms + int((tick.time_msc - first) / speed))
