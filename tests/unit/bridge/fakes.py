"""An in-memory tick sink with the tick store's durability contract, for bridge unit tests."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from aitrading.model.market import Tick


class MemorySink:
    """Stores ticks and marks together; can be told to fail the next writes."""

    def __init__(self) -> None:
        self.ticks: list[Tick] = []
        self.marks: dict[str, int] = {}
        self.writes = 0
        self.fail_next = 0

    async def write_ticks(self, ticks: Sequence[Tick], marks: Mapping[str, int] = {}) -> int:
        if self.fail_next:
            self.fail_next -= 1
            raise OSError("disk unavailable")
        self.writes += 1
        self.ticks.extend(ticks)
        for src, seq in marks.items():
            self.marks[src] = max(seq, self.marks.get(src, 0))
        return len(ticks)

    async def durable_marks(self) -> dict[str, int]:
        return dict(self.marks)
