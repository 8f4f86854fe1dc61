"""Account state: equity, free margin and margin level, exact and quantized half-up."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st
from model_samples import LOT, deal, eurusd

from aitrading.model.accounts import AccountState, floating_of
from aitrading.model.enums import MarginMode, Side
from aitrading.model.positions import apply_deal_netting, linear_profit, mark

cents = st.integers(min_value=-(10**12), max_value=10**12).map(lambda n: Decimal(n).scaleb(-2))
amounts = st.decimals(min_value=-(10**9), max_value=10**9, places=6, allow_nan=False, allow_infinity=False)


def state(**kw: object) -> AccountState:
    fields: dict[str, object] = {
        "login": 5001,
        "currency": "USD",
        "leverage": 100,
        "margin_mode": MarginMode.RETAIL_HEDGING,
        "balance": Decimal("10000"),
    }
    fields.update(kw)
    return AccountState.of(**fields)  # type: ignore[arg-type]


def test_equity_free_margin_and_level_follow_mt5_definitions() -> None:
    s = state(balance="10000", credit="500", floating="-250.5", margin="1000")
    assert (s.equity, s.margin_free, s.margin_level) == (
        Decimal("10249.50"),
        Decimal("9249.50"),
        Decimal("1024.95"),
    )
    assert s.hedging


def test_margin_level_is_none_without_margin() -> None:
    assert state(margin=0).margin_level is None


def test_money_is_quantized_half_away_from_zero_to_the_currency_digits() -> None:
    s = state(balance="100.005", floating="-0.005")
    assert (s.balance, s.profit, s.equity) == (Decimal("100.01"), Decimal("-0.01"), Decimal("100.00"))
    yen = state(balance="1234.5", digits=0)
    assert yen.balance == Decimal("1235")


def test_margin_level_rounds_the_exact_ratio_half_up() -> None:
    # 1000.05 / 800 × 100 = 125.00625 → 125.01
    assert state(balance="1000.05", margin="800").margin_level == Decimal("125.01")


def test_negative_margin_is_refused() -> None:
    with pytest.raises(ValueError, match="margin"):
        state(margin="-1")


@given(cents, cents, amounts, st.integers(min_value=0, max_value=10**10).map(lambda n: Decimal(n).scaleb(-2)))
def test_derived_fields_agree_with_their_definitions(
    balance: Decimal, credit: Decimal, floating: Decimal, margin: Decimal
) -> None:
    s = state(balance=balance, credit=credit, floating=floating, margin=margin)
    assert s.profit == floating.quantize(Decimal("0.01"), rounding="ROUND_HALF_UP")
    assert s.equity == balance + credit + s.profit
    assert s.margin_free == s.equity - margin
    if margin == 0:
        assert s.margin_level is None
    else:
        assert s.margin_level is not None
        exact = Fraction(s.equity) * 100 / Fraction(margin)
        assert abs(Fraction(s.margin_level) - exact) <= Fraction(1, 200)
    assert s.is_consistent()


def test_updated_recomputes_and_a_tampered_state_is_inconsistent() -> None:
    s = state(margin="100")
    moved = s.updated(floating="50")
    assert (moved.equity, moved.margin_level) == (Decimal("10050.00"), Decimal("10050.00"))
    assert not msgspec.structs.replace(s, equity=Decimal(1)).is_consistent()


def test_floating_of_positions_counts_profit_and_swap() -> None:
    profit = linear_profit(Decimal(100_000))
    pos, _ = apply_deal_netting(None, deal(1, Side.BUY, LOT, eurusd("1.1")), profit)
    assert pos is not None
    marked = mark(pos, eurusd("1.1005"), profit)
    with_swap = msgspec.structs.replace(marked, swap=Decimal("-1.25"))
    assert floating_of([with_swap]) == Decimal("48.75")
    assert state(floating=floating_of([with_swap])).equity == Decimal("10048.75")
