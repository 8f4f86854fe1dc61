"""AI trading platform for MetaTrader 5 traders."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("aitrading")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+source"

__all__ = ["__version__"]
