"""Trading account state (MT5's `AccountInfo` essentials) with exact, quantized money.

`equity = balance + credit + floating`, `margin_free = equity − margin` and `margin_level = equity / margin ×
100` (None while margin is 0). Money is quantized half away from zero to the account currency's `digits`
(`values.money`); the margin level to 2 decimals, as MT5 shows it. Build states with `AccountState.of` and
change them with `updated`, so the derived fields always agree with their inputs.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import ROUND_HALF_UP, Decimal

import msgspec

from aitrading.model._exact import decimal_from_scaled
from aitrading.model.enums import MarginMode
from aitrading.model.positions import Position

__all__ = ["AccountState", "MarginMode", "floating_of"]

MARGIN_LEVEL_DIGITS = 2
_QUANTA: dict[int, Decimal] = {}
"""10^-digits per currency digits: the quantum `values.money` quantizes to."""
_BUILT: dict[int, AccountState] = {}
"""The last states `AccountState.of` built, by identity (held, so an id cannot be reused while listed):
their money is quantized, so `updated` can change the floating result alone. A state decoded from a
message is not listed and takes the full path."""
_BUILT_MAX = 64


def floating_of(positions: Iterable[Position]) -> Decimal:
    """Return the floating result of `positions`: their profit plus their swap (as MT5's equity counts)."""
    return sum((p.profit + p.swap for p in positions), Decimal(0))


def _margin_level(equity: Decimal, margin: Decimal) -> Decimal:
    """Return `fraction_to_money(Fraction(equity) * 100 / Fraction(margin), 2)` for margin > 0.

    On one integer numerator and denominator rather than `Fraction`s (each normalises through a gcd): the
    backtester builds a state on every quote. The remainder is compared with the divisor, so the unreduced
    ratio rounds half away from zero exactly as the reduced fraction does.
    """
    equity_num, equity_den = equity.as_integer_ratio()
    margin_num, margin_den = margin.as_integer_ratio()
    num = equity_num * margin_den * 100 * 10**MARGIN_LEVEL_DIGITS
    den = equity_den * margin_num
    q, r = divmod(abs(num), den)
    if 2 * r >= den:
        q += 1
    return decimal_from_scaled(-q if num < 0 else q, MARGIN_LEVEL_DIGITS)


class AccountState(msgspec.Struct, frozen=True, kw_only=True):
    """Balance, equity and margin of one trading account at one moment; `profit` is the floating result."""

    login: int
    server: str = ""
    currency: str
    digits: int = 2
    leverage: int
    margin_mode: MarginMode
    balance: Decimal
    credit: Decimal
    profit: Decimal
    equity: Decimal
    margin: Decimal
    margin_free: Decimal
    margin_level: Decimal | None

    @classmethod
    def of(
        cls,
        *,
        login: int,
        currency: str,
        leverage: int,
        margin_mode: MarginMode,
        balance: Decimal | int | str,
        credit: Decimal | int | str = 0,
        floating: Decimal | int | str = 0,
        margin: Decimal | int | str = 0,
        digits: int = 2,
        server: str = "",
    ) -> AccountState:
        """Return the state with these inputs and the derived fields computed and quantized."""
        # `values.money` of each input, with the quantum looked up once: a backtest builds states per quote.
        quantum = _QUANTA.get(digits)
        if quantum is None:
            quantum = _QUANTA[digits] = Decimal(1).scaleb(-digits)
        balance_q = Decimal(balance).quantize(quantum, rounding=ROUND_HALF_UP)
        credit_q = Decimal(credit).quantize(quantum, rounding=ROUND_HALF_UP)
        floating_q = Decimal(floating).quantize(quantum, rounding=ROUND_HALF_UP)
        margin_q = Decimal(margin).quantize(quantum, rounding=ROUND_HALF_UP)
        if margin_q < 0:
            raise ValueError(f"margin must not be negative, got {margin_q}")
        equity = balance_q + credit_q + floating_q
        level = None if margin_q == 0 else _margin_level(equity, margin_q)
        state = cls(
            login=login,
            server=server,
            currency=currency,
            digits=digits,
            leverage=leverage,
            margin_mode=margin_mode,
            balance=balance_q,
            credit=credit_q,
            profit=floating_q,
            equity=equity,
            margin=margin_q,
            margin_free=equity - margin_q,
            margin_level=level,
        )
        if len(_BUILT) >= _BUILT_MAX:
            _BUILT.clear()
        _BUILT[id(state)] = state
        return state

    def updated(
        self,
        *,
        balance: Decimal | int | str | None = None,
        credit: Decimal | int | str | None = None,
        floating: Decimal | int | str | None = None,
        margin: Decimal | int | str | None = None,
    ) -> AccountState:
        """Return the state with the given inputs changed and the derived fields recomputed."""
        if (
            balance is None
            and credit is None
            and margin is None
            and floating is not None
            and _BUILT.get(id(self)) is self
            and type(self) is AccountState
        ):
            # Only the floating result changed (every marked quote) and `of` built this state, so its
            # balance, credit and margin are already quantized: `of` would return them unchanged.
            digits = self.digits
            quantum = _QUANTA[digits]
            floating_q = Decimal(floating).quantize(quantum, rounding=ROUND_HALF_UP)
            margin_q = self.margin
            equity = self.balance + self.credit + floating_q
            state = AccountState(
                login=self.login,
                server=self.server,
                currency=self.currency,
                digits=digits,
                leverage=self.leverage,
                margin_mode=self.margin_mode,
                balance=self.balance,
                credit=self.credit,
                profit=floating_q,
                equity=equity,
                margin=margin_q,
                margin_free=equity - margin_q,
                margin_level=None if margin_q == 0 else _margin_level(equity, margin_q),
            )
            if len(_BUILT) >= _BUILT_MAX:
                _BUILT.clear()
            _BUILT[id(state)] = state
            return state
        return AccountState.of(
            login=self.login,
            server=self.server,
            currency=self.currency,
            digits=self.digits,
            leverage=self.leverage,
            margin_mode=self.margin_mode,
            balance=self.balance if balance is None else balance,
            credit=self.credit if credit is None else credit,
            floating=self.profit if floating is None else floating,
            margin=self.margin if margin is None else margin,
        )

    @property
    def hedging(self) -> bool:
        """True for a hedging account (each deal IN opens its own position)."""
        return self.margin_mode.is_hedging

    def is_consistent(self) -> bool:
        """Tell whether the derived fields agree with the inputs (e.g. after decoding from elsewhere)."""
        return self == self.updated()
