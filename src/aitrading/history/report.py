"""What an import did: rows read, imported, rejected by reason (with line numbers), time range, speed.

Every data row ends in exactly one bucket, so `rows == parse errors + rejected + imported +
already_imported` (header and blank lines are not rows).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

__all__ = ["ImportReport", "format_ms"]

_KEEP_LINES = 5


def format_ms(ms: int) -> str:
    """Return epoch milliseconds as `YYYY-MM-DD HH:MM:SS.mmm` UTC."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


@dataclass
class ImportReport:
    """The outcome of one `import_ticks` or `import_bars` call."""

    path: str
    kind: str  # "ticks" or "bars"
    format: str
    feed: str
    symbol: str
    source: str = ""
    """The ingest source whose durable marks record which rows are stored (tick imports)."""
    rows: int = 0
    """Data rows read (header and blank lines excluded)."""
    imported: int = 0
    """Ticks (or bars) written by this call."""
    already_imported: int = 0
    """Accepted ticks an earlier import of the same content had stored: skipped."""
    chunks: int = 0
    chunks_already_imported: int = 0
    parse_errors: Counter[str] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)
    """Validation rejections by reason (the live bridge's reasons, `duplicate` among them)."""
    lines: dict[str, list[int]] = field(default_factory=dict)
    """The first few line numbers of each parse error and rejection reason."""
    first_ms: int | None = None
    last_ms: int | None = None
    digits: int | None = None
    digits_from: str = ""
    decimals_seen: int | None = None
    bars: dict[str, int] = field(default_factory=dict)
    """Bars written per timeframe."""
    overlap: bool = False
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def reject(self, reason: str, line: int) -> None:
        """Count one rejected row."""
        self.rejected[reason] += 1
        kept = self.lines.setdefault(reason, [])
        if len(kept) < _KEEP_LINES:
            kept.append(line)

    @property
    def duplicates(self) -> int:
        """Rows that exactly repeated the tick (or bar time) before them."""
        return self.rejected["duplicate"]

    @property
    def rejected_total(self) -> int:
        return self.rejected.total()

    @property
    def parse_errors_total(self) -> int:
        return self.parse_errors.total()

    @property
    def is_already_imported(self) -> bool:
        """True if every chunk of the file was stored by an earlier import (nothing new was written)."""
        return self.chunks > 0 and self.chunks == self.chunks_already_imported

    @property
    def rate(self) -> float:
        """Rows per second over the whole call."""
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    def time_range(self) -> str:
        """The accepted rows' time range in UTC, or `-` if there were none."""
        if self.first_ms is None or self.last_ms is None:
            return "-"
        return f"{format_ms(self.first_ms)} → {format_ms(self.last_ms)} UTC"

    def status(self) -> str:
        """One line saying what happened, e.g. `already imported: 1 chunk (100,000 ticks) skipped`."""
        unit = self.kind
        if self.is_already_imported:
            return (
                f"already imported: {self.chunks_already_imported} chunk(s) "
                f"({self.already_imported:,} {unit}) were stored before; nothing new written"
            )
        text = f"imported {self.imported:,} {unit}"
        if self.chunks_already_imported:
            text += (
                f"; already imported: {self.chunks_already_imported} chunk(s) "
                f"({self.already_imported:,} {unit}) skipped"
            )
        return text

    def to_dict(self) -> dict[str, Any]:
        """Return the report as plain data (for JSON output and logs)."""
        return {
            "path": self.path,
            "kind": self.kind,
            "format": self.format,
            "feed": self.feed,
            "symbol": self.symbol,
            "source": self.source,
            "rows": self.rows,
            "imported": self.imported,
            "already_imported": self.already_imported,
            "chunks": self.chunks,
            "chunks_already_imported": self.chunks_already_imported,
            "duplicates": self.duplicates,
            "parse_errors": dict(self.parse_errors),
            "rejected": dict(self.rejected),
            "lines": self.lines,
            "first_ms": self.first_ms,
            "last_ms": self.last_ms,
            "digits": self.digits,
            "digits_from": self.digits_from,
            "bars": self.bars,
            "warnings": self.warnings,
            "seconds": round(self.seconds, 3),
        }
