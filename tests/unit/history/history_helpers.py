"""Generated history files for the import tests (MT5 exports and small CSVs), written to a temp folder."""

from __future__ import annotations

from pathlib import Path

MT5_TICK_HEADER = "<DATE>\t<TIME>\t<BID>\t<ASK>\t<LAST>\t<VOLUME>\t<FLAGS>"
MT5_BAR_HEADER = "<DATE>\t<TIME>\t<OPEN>\t<HIGH>\t<LOW>\t<CLOSE>\t<TICKVOL>\t<VOL>\t<SPREAD>"
MT5_D1_HEADER = "<DATE>\t<OPEN>\t<HIGH>\t<LOW>\t<CLOSE>\t<TICKVOL>\t<VOL>\t<SPREAD>"

# Broker time is UTC+2 (Etc/GMT-2). MT5 writes only the sides that changed; FLAGS say which (2 bid, 4 ask).
MT5_TICK_ROWS = [
    ("2020.01.30", "17:28:09.820", "1.10281", "1.10285", "", "", "6"),
    ("2020.01.30", "17:28:09.900", "", "1.10286", "", "", "4"),
    ("2020.01.30", "17:28:10.015", "1.10280", "", "", "", "2"),
    ("2020.01.30", "17:29:00.001", "1.10279", "1.10283", "", "", "6"),
    ("2020.01.31", "01:00:00.000", "1.10300", "1.10302", "", "", "6"),
]


def write_utf16_bom(path: Path, lines: list[str]) -> Path:
    """Write `lines` as MT5 does: UTF-16 LE with a BOM, CRLF line ends."""
    path.write_bytes(b"\xff\xfe" + "".join(line + "\r\n" for line in lines).encode("utf-16-le"))
    return path


def mt5_tick_export(folder: Path, rows: list[tuple[str, ...]] | None = None) -> Path:
    """An MT5 tick export of `rows` (default `MT5_TICK_ROWS`)."""
    lines = [MT5_TICK_HEADER, *("\t".join(r) for r in (MT5_TICK_ROWS if rows is None else rows))]
    return write_utf16_bom(folder / "EURUSD_ticks.csv", lines)


def mt5_bar_export(folder: Path, name: str, rows: list[str], *, daily: bool = False) -> Path:
    """An MT5 bar export named `name` with tab-separated `rows`."""
    return write_utf16_bom(folder / name, [MT5_D1_HEADER if daily else MT5_BAR_HEADER, *rows])
