"""What the bridge knows of each feed's symbols: announced by agents in their hello (name → digits)."""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["SymbolRegistry"]


class SymbolRegistry:
    """Per feed, the symbols agents announced and their digits.

    A feed nobody has announced symbols for is open (every symbol passes); once a feed has announced
    symbols, ticks of other symbols on it are rejected as `unknown_symbol`.
    """

    def __init__(self) -> None:
        self._digits: dict[str, dict[str, int]] = {}
        self._known: dict[str, frozenset[str]] = {}

    def register(self, feed: str, symbols: Mapping[str, int]) -> None:
        """Add (or update) `symbols` with their digits to `feed`."""
        if not symbols:
            return
        table = self._digits.setdefault(feed, {})
        table.update({name: int(d) for name, d in symbols.items() if 0 <= int(d) <= 9})
        self._known[feed] = frozenset(table)

    def known(self, feed: str) -> frozenset[str] | None:
        """The symbols of `feed`, or None when the feed announced none (nothing to check against)."""
        return self._known.get(feed)

    def digits(self, feed: str, symbol: str) -> int | None:
        """The digits of `symbol` on `feed`, if announced."""
        return self._digits.get(feed, {}).get(symbol)
