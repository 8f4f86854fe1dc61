"""`aitrading import ticks|bars`: history files into the platform's tick store, with progress and a summary.

The store is the one the platform's config names (`storage.ticks`: embedded chDB under
`storage.data_dir`, or a ClickHouse server). Embedded chDB admits one process per database directory,
so while the platform runs the import cannot open it: that is detected up front and said in one line.
"""

from __future__ import annotations

import asyncio
import enum
import os
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from aitrading.common.config import load_config
from aitrading.common.errors import AITradingError, BadInputError, OperationalError
from aitrading.common.logging import configure_logging
from aitrading.history._fields import resolve_zone
from aitrading.history.formats import DEFAULT_ZONES, CsvOptions, TickFormat
from aitrading.history.importer import import_bars, import_ticks
from aitrading.history.report import ImportReport
from aitrading.model.market import Timeframe
from aitrading.storage.ticks import TickStore, make_tick_store

__all__ = ["app"]

app = typer.Typer(
    name="import",
    help="Import history files you already have (MT5, HistData, Dukascopy, TrueFX, CSV) into the tick store.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err = Console(stderr=True)

_TF_IN_NAME = re.compile(r"(?:^|[_\-. ])(M1|M5|M15|M30|H1|H4|D1)(?=[_\-. ]|$)", re.IGNORECASE)
_MT5_TZ_HELP = "MT5 exports are in broker time: pass --tz, e.g. --tz Etc/GMT-2"


class BarFormat(enum.StrEnum):
    """The bar file formats `aitrading import bars` reads."""

    MT5 = "mt5"


Job = Callable[[TickStore, Callable[[int, int], None]], Awaitable[ImportReport]]


def _chdb_locked(path: Path) -> bool:
    """Tell whether another process holds the chDB directory (ClickHouse flocks its `status` file)."""
    try:
        import fcntl
    except ImportError:  # Windows: opening the store reports it instead
        return False
    try:
        fd = os.open(path / "status", os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def _in_use(path: Path) -> OperationalError:
    return OperationalError(
        f"the tick store at {path} is in use by another process (is the platform running?): stop the "
        "platform, then import again; embedded chDB admits one process at a time"
    )


def _run(path: Path, job: Job, log_level: str | None) -> ImportReport:
    """Open the configured tick store, run `job` under a progress bar, stop the store; return the report."""
    if not path.is_file():
        raise BadInputError(f"no such file: {path}")
    cfg = load_config()
    configure_logging(log_level or "WARNING", json=cfg.log_json)
    storage = cfg.storage
    store = make_tick_store(storage.ticks, chdb_path=storage.chdb_path, clickhouse_url=storage.clickhouse_url)
    if storage.ticks == "chdb" and _chdb_locked(storage.chdb_path):
        raise _in_use(storage.chdb_path)
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console) as progress:
        task = progress.add_task(f"reading {path.name}", total=path.stat().st_size)

        def advance(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        async def main() -> ImportReport:
            try:
                await store.start()
            except OperationalError:
                if storage.ticks == "chdb" and _chdb_locked(storage.chdb_path):
                    raise _in_use(storage.chdb_path) from None
                raise
            try:
                return await job(store, advance)
            finally:
                await store.stop()

        return asyncio.run(main())


def _reasons(counts: dict[str, int], lines: dict[str, list[int]]) -> str:
    parts = []
    for reason, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        kept = lines.get(reason, [])
        where = ", ".join(str(line) for line in kept) + (", …" if n > len(kept) else "")
        label = "line" if n == 1 else "lines"
        parts.append(f"{reason} {n:,} ({label} {where})" if kept else f"{reason} {n:,}")
    return "\n".join(parts)


def _summary(report: ImportReport) -> None:
    unit = report.kind
    table = Table(
        title=f"{report.feed} {report.symbol} ← {Path(report.path).name} ({report.format})", show_header=False
    )
    table.add_column("", style="bold")
    table.add_column("")
    table.add_row("result", report.status())
    table.add_row("rows read", f"{report.rows:,}")
    table.add_row(f"{unit} imported", f"{report.imported:,}")
    if report.chunks_already_imported:
        table.add_row(
            "already imported", f"{report.already_imported:,} in {report.chunks_already_imported} chunk(s)"
        )
    table.add_row("duplicates", f"{report.duplicates:,}")
    others = {k: v for k, v in report.rejected.items() if k != "duplicate"}
    table.add_row("rejected", _reasons(others, report.lines) or "0")
    table.add_row("bad rows", _reasons(dict(report.parse_errors), report.lines) or "0")
    table.add_row("time range", report.time_range())
    if report.digits is not None:
        table.add_row("digits", f"{report.digits} (from {report.digits_from})")
    if report.bars:
        table.add_row("bars written", " · ".join(f"{tf} {n:,}" for tf, n in report.bars.items()))
    table.add_row("time", f"{report.seconds:.2f} s, {report.rate:,.0f} rows/s")
    console.print(table)
    for warning in report.warnings:
        console.print(f"[yellow]warning:[/] {escape(warning)}", soft_wrap=True, highlight=False)


def _fail(exc: AITradingError) -> typer.Exit:
    err.print(f"[red]error:[/] {escape(str(exc))}", soft_wrap=True, highlight=False)
    return typer.Exit(2)


@app.command("ticks")
def ticks(
    file: Annotated[Path, typer.Argument(help="The tick file (.gz read transparently)", show_default=False)],
    fmt: Annotated[
        TickFormat, typer.Option("--format", "-f", help="The file's format", case_sensitive=False)
    ],
    symbol: Annotated[
        str, typer.Option("--symbol", "-s", help="Symbol to store the ticks under, e.g. EURUSD")
    ],
    feed: Annotated[str, typer.Option(help="Feed (broker server) to store the ticks under")],
    tz: Annotated[
        str | None,
        typer.Option(help="Zone of the file's times: required for mt5 (broker time); IANA name or +02:00"),
    ] = None,
    digits: Annotated[
        int | None, typer.Option(help="Price digits for bar spreads (default: symbol spec, else the file)")
    ] = None,
    time_col: Annotated[
        str | None, typer.Option(help="csv: time column (header name or 1-based number)")
    ] = None,
    date_col: Annotated[str | None, typer.Option(help="csv: separate date column before the time")] = None,
    bid_col: Annotated[str | None, typer.Option(help="csv: bid column")] = None,
    ask_col: Annotated[str | None, typer.Option(help="csv: ask column")] = None,
    time_format: Annotated[
        str, typer.Option(help="csv: auto, epoch_s, epoch_ms, epoch_us, epoch_ns or a strptime pattern")
    ] = "auto",
    chunk: Annotated[int, typer.Option(help="Ticks per atomic write")] = 100_000,
    log_level: Annotated[str | None, typer.Option(help="Log level on stderr (default WARNING)")] = None,
) -> None:
    """Import a tick file: validated like live ticks, stored exactly once, then bars M1…D1."""
    try:
        if tz is None and DEFAULT_ZONES[fmt] is None:
            raise BadInputError(_MT5_TZ_HELP)
        if tz is not None:
            resolve_zone(tz)
        options = CsvOptions(time_col, bid_col, ask_col, date_col, time_format)

        async def job(store: TickStore, progress: Callable[[int, int], None]) -> ImportReport:
            return await import_ticks(
                store,
                file,
                fmt,
                symbol=symbol,
                feed=feed,
                tz=tz,
                digits=digits,
                chunk=chunk,
                progress=progress,
                options=options,
            )

        report = _run(file, job, log_level)
    except AITradingError as exc:
        raise _fail(exc) from None
    _summary(report)


@app.command("bars")
def bars(
    file: Annotated[
        Path, typer.Argument(help="The MT5 bar export (.gz read transparently)", show_default=False)
    ],
    symbol: Annotated[str, typer.Option("--symbol", "-s", help="Symbol to store the bars under")],
    feed: Annotated[str, typer.Option(help="Feed (broker server) to store the bars under")],
    tz: Annotated[str | None, typer.Option(help="The broker's time zone (required), e.g. Etc/GMT-2")] = None,
    timeframe: Annotated[
        str | None, typer.Option(help="M1, M5, M15, M30, H1, H4 or D1 (default: from the file name)")
    ] = None,
    fmt: Annotated[BarFormat, typer.Option("--format", "-f", help="The file's format")] = BarFormat.MT5,
    log_level: Annotated[str | None, typer.Option(help="Log level on stderr (default WARNING)")] = None,
) -> None:
    """Import an MT5 bar export (bars with the same time replace stored ones)."""
    try:
        if tz is None:
            raise BadInputError(_MT5_TZ_HELP)
        resolve_zone(tz)
        tf = _timeframe(timeframe, file)

        async def job(store: TickStore, progress: Callable[[int, int], None]) -> ImportReport:
            return await import_bars(
                store, file, fmt.value, symbol=symbol, feed=feed, timeframe=tf, tz=tz, progress=progress
            )

        report = _run(file, job, log_level)
    except AITradingError as exc:
        raise _fail(exc) from None
    _summary(report)


def _timeframe(text: str | None, file: Path) -> Timeframe:
    if text is None:
        found = _TF_IN_NAME.search(file.name)
        if found is None:
            raise BadInputError(
                f"pass --timeframe (M1, M5, M15, M30, H1, H4 or D1): {file.name} does not say"
            )
        text = found.group(1)
    try:
        return Timeframe.parse(text)
    except ValueError as exc:
        raise BadInputError(str(exc)) from None
