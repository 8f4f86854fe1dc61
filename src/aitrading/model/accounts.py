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

from aitrading.model._exact import decimal_from_scaled, div_half_away
from aitrading.model.enums import MarginMode
from aitrading.model.positions import Position

__all__ = ["AccountState", "FloatingResults", "MarginMode", "floating_of", "money_decimal"]

MARGIN_LEVEL_DIGITS = 2
_LEVEL_SCALE = 100 * 10**MARGIN_LEVEL_DIGITS
_QUANTA: dict[int, Decimal] = {}
"""10^-digits per currency digits: the quantum `values.money` quantizes to."""
_BUILT: dict[int, AccountState] = {}
"""The last states `AccountState.of` built, by identity (held, so an id cannot be reused while listed):
their money is quantized, so `updated` can change the floating result alone. A state decoded from a
message is not listed and takes the full path."""
_BUILT_MAX = 64
_SAFE_UNITS = 10**25
"""Below it, sums of a few such amounts keep every digit in `Decimal`'s 28-digit context (no rounding)."""
_LEVELS: dict[int, Decimal] = {}
"""Margin levels by their value in hundredths: the same levels come back as the quotes move to and fro."""
_LEVELS_MAX = 4096
_MONEY: dict[int, dict[int, Decimal]] = {}
"""`money_decimal`'s amounts by digits, then by units."""
_MONEY_MAX = 4096


def money_decimal(units: int, digits: int) -> Decimal:
    """Return `Decimal(units).scaleb(-digits)` (exact for |units| < 10^25 and digits ≥ 0), remembered.

    Floating profits and results come back as the quotes move to and fro: a lookup costs less than a new
    `Decimal`, and `Decimal`s are immutable, so sharing one is safe.
    """
    known = _MONEY.get(digits)
    if known is None:
        known = _MONEY[digits] = {}
    value = known.get(units)
    if value is None:
        if len(known) >= _MONEY_MAX:
            known.clear()
        value = known[units] = Decimal(units).scaleb(-digits)
    return value


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
    return decimal_from_scaled(div_half_away(num, den), MARGIN_LEVEL_DIGITS)


def _level_of(equity_units: int, margin_units: int) -> Decimal:
    """Return `_margin_level` of equity and margin (> 0) given in the same units (their ratio is the same)."""
    q = div_half_away(equity_units * _LEVEL_SCALE, margin_units)
    level = _LEVELS.get(q)
    if level is None:
        if len(_LEVELS) >= _LEVELS_MAX:
            _LEVELS.clear()
        level = _LEVELS[q] = decimal_from_scaled(q, MARGIN_LEVEL_DIGITS)
    return level


def _remember(state: AccountState) -> None:
    if len(_BUILT) >= _BUILT_MAX:
        _BUILT.clear()
    _BUILT[id(state)] = state


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
        state = cls.of_quantized(
            login=login,
            server=server,
            currency=currency,
            digits=digits,
            leverage=leverage,
            margin_mode=margin_mode,
            balance=balance_q,
            credit=credit_q,
            floating=floating_q,
            margin=margin_q,
        )
        _remember(state)
        return state

    @classmethod
    def of_quantized(
        cls,
        *,
        login: int,
        server: str,
        currency: str,
        digits: int,
        leverage: int,
        margin_mode: MarginMode,
        balance: Decimal,
        credit: Decimal,
        floating: Decimal,
        margin: Decimal,
        margin_level: Decimal | None = None,
    ) -> AccountState:
        """`of` on inputs already quantized to `digits` (it would return them unchanged): the derived fields
        only. A caller that has the margin level worked out otherwise (on integers) passes it; it must equal
        `of`'s, and is None exactly when the margin is zero."""
        equity = balance + credit + floating
        if margin_level is None and margin:
            margin_level = _margin_level(equity, margin)
        return cls(
            login=login,
            server=server,
            currency=currency,
            digits=digits,
            leverage=leverage,
            margin_mode=margin_mode,
            balance=balance,
            credit=credit,
            profit=floating,
            equity=equity,
            margin=margin,
            margin_free=equity - margin,
            margin_level=margin_level,
        )

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
            state = AccountState.of_quantized(
                login=self.login,
                server=self.server,
                currency=self.currency,
                digits=digits,
                leverage=self.leverage,
                margin_mode=self.margin_mode,
                balance=self.balance,
                credit=self.credit,
                floating=Decimal(floating).quantize(_QUANTA[digits], rounding=ROUND_HALF_UP),
                margin=self.margin,
            )
            _remember(state)
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

    def floating_units(self, units: int) -> AccountState | None:
        """Return `updated(floating=f)` for any `f` worth units × 10^-digits (but a negative zero), computed
        on integers; None when it needs `updated` (see `FloatingResults`, which the engine keeps per book)."""
        results = FloatingResults.start(self)
        state = None if results is None else results.next(units)
        if state is not None:
            _remember(state)
        return state

    @property
    def hedging(self) -> bool:
        """True for a hedging account (each deal IN opens its own position)."""
        return self.margin_mode.is_hedging

    def is_consistent(self) -> bool:
        """Tell whether the derived fields agree with the inputs (e.g. after decoding from elsewhere)."""
        return self == self.updated()


class FloatingResults:
    """One account's successive states while only its floating result moves: `AccountState.updated` of the
    floating result, on integers, with the state's money worked out once.

    The engine marks its books on every quote and knows the floating result as an integer by then. This
    starts only from states `of` or `updated` built (their money is quantized) and takes amounts small
    enough that `Decimal` arithmetic is exact; equity and margin level then follow from the same integers
    as `updated` derives them from the `Decimal`s, so each state is the same, field for field. `state` is
    the last one built (not listed for `updated`'s shortcut: `updated` of it takes `of`, to the same result).
    """

    __slots__ = ("_balance_credit", "_base", "_margin_units", "state")

    def __init__(self, state: AccountState, balance_credit: Decimal, base: int, margin_units: int) -> None:
        self.state = state
        self._balance_credit, self._base, self._margin_units = balance_credit, base, margin_units

    @classmethod
    def start(cls, state: AccountState) -> FloatingResults | None:
        """Return the results that go on from `state`; None unless `of` or `updated` built it."""
        digits = state.digits
        if _BUILT.get(id(state)) is not state or type(state) is not AccountState or digits < 0:
            return None
        scale = 10**digits
        balance_credit = state.balance + state.credit  # as `updated` adds them: first, then the floating
        base_num, base_den = balance_credit.as_integer_ratio()
        margin_num, margin_den = state.margin.as_integer_ratio()
        if (base_num * scale) % base_den or (margin_num * scale) % margin_den:
            return None  # not on the currency's grid (never after `of`): take the general path
        base, margin_units = base_num * scale // base_den, margin_num * scale // margin_den
        if abs(base) >= _SAFE_UNITS or margin_units >= _SAFE_UNITS:
            return None
        return cls(state, balance_credit, base, margin_units)

    def next(self, units: int) -> AccountState | None:
        """Return `state.updated(floating=f)`, `f` worth units × 10^-digits (but a negative zero), and make
        it `state`; None (and `state` unchanged) when the amount is too large to be exact."""
        if abs(units) >= _SAFE_UNITS:
            return None
        state = self.state
        floating_q = money_decimal(units, state.digits)  # what quantizing the exact sum to `digits` gives
        equity = self._balance_credit + floating_q
        margin_units = self._margin_units
        self.state = state = msgspec.structs.replace(
            state,
            profit=floating_q,
            equity=equity,
            margin_free=equity - state.margin,
            margin_level=None if margin_units == 0 else _level_of(self._base + units, margin_units),
        )
        return state
