"""History import: the tick and bar files traders already have, into the tick store exactly once.

`import_ticks` streams a file (`mt5`, `histdata`, `dukascopy`, `truefx` or generic `csv`; gzip and
UTF-16 read transparently) through the live bridge's tick validation into the store, then builds bars of
every timeframe; `import_bars` stores an MT5 bar export. `aitrading.history.cli.app` is the
`aitrading import ticks|bars` command group.
"""

from aitrading.history.formats import CsvOptions, TickFormat
from aitrading.history.importer import import_bars, import_ticks, source_id
from aitrading.history.report import ImportReport

__all__ = ["CsvOptions", "ImportReport", "TickFormat", "import_bars", "import_ticks", "source_id"]
