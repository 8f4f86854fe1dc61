"""Whether the simulated broker could work out a new order's margin, without working it out.

`Requests` leaves `model.checks.check_request`'s money step out (it checks the whole account's margin after
the fill instead), but a margin that cannot be computed must still be refused with ERROR, as that step
would: `MarginProblems` finds what `model.calc.margin` would raise, at the cost of one conversion lookup.
"""

from __future__ import annotations

from collections.abc import Callable

from aitrading.model.calc import margin_exact, money_of, rate_ratio
from aitrading.model.enums import Side
from aitrading.model.market import Tick
from aitrading.model.symbols import SymbolSpec
from aitrading.mt5.sim._ledger import Ledger

__all__ = ["MarginProblems"]


class _Quoted:
    """Rates with every quote at 1 (finding the margin formula's own failures, apart from the quotes)."""

    def quote(self, symbol: str) -> tuple[int, int]:
        return 1, 1


_QUOTED = _Quoted()


def _raised(call: Callable[[], object]) -> str:
    """Return the `ValueError` `call` raises, as text ("" when it returns)."""
    try:
        call()
    except ValueError as exc:
        return str(exc)
    return ""


class MarginProblems:
    """What `model.calc.margin` would raise for new orders of one ledger's account, by symbol and side."""

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger
        self._fixed: dict[tuple[str, Side], tuple[str, str, bool]] = {}

    def find(self, spec: SymbolSpec, side: Side, tick: Tick) -> str:
        """Return why `model.calc.margin` would raise for `side` of `spec` now ("" when it would not);
        `tick` is the quote the request was checked at.

        It raises on the account's leverage, the symbol's contract size and calculation mode (fixed: found
        once, with every conversion quote at hand), then on a missing conversion quote (`rate_ratio`, as it
        calls it), then on the account's digits — never on the volume or price. A symbol whose margin
        currency is the account's, or that converts its margin itself (EURUSD for a USD account), has its
        conversion quote whenever its own quote is usable.
        """
        ledger = self._ledger
        account = ledger.account
        key = (spec.name, side)
        fixed = self._fixed.get(key)
        if fixed is None:
            fixed = self._fixed[key] = (
                _raised(
                    lambda: margin_exact(
                        spec,
                        side,
                        0,
                        0,
                        leverage=account.leverage,
                        account_currency=account.currency,
                        rates=_QUOTED,
                    )
                ),
                _raised(lambda: money_of(0, 1, account.currency_digits)),
                spec.currency_margin == account.currency
                or spec.currency_margin + account.currency == spec.name,
            )
        problem, digits_problem, converts_itself = fixed
        if problem:
            return problem
        quoted = (
            converts_itself and tick.bid > 0 and tick.ask > 0 and ledger.quotes.ticks.get(spec.name) is tick
        )
        if not quoted:
            buy = side is Side.BUY
            try:
                rate_ratio(
                    spec.currency_margin,
                    account.currency,
                    ledger.quotes,
                    use_ask_direct=buy,
                    use_ask_inverse=buy,
                )
            except ValueError as exc:
                return str(exc)
        return digits_problem
