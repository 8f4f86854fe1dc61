"""`AccountState.floating_units` (the engine's per-quote state, on integers) is `updated(floating=...)` of the
same amount, field for field and digit for digit; it declines what it cannot do exactly."""

from __future__ import annotations

from decimal import Decimal

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from aitrading.model.accounts import _BUILT, AccountState, FloatingResults, money_decimal
from aitrading.model.enums import MarginMode

_enc = msgspec.json.Encoder()
money_st = st.decimals(min_value=-(10**12), max_value=10**12, places=4, allow_nan=False, allow_infinity=False)


def _state(balance: Decimal, credit: Decimal, margin: Decimal, digits: int) -> AccountState:
    return AccountState.of(
        login=7,
        currency="USD",
        leverage=100,
        margin_mode=MarginMode.RETAIL_NETTING,
        balance=balance,
        credit=credit,
        margin=abs(margin),
        digits=digits,
    )


@settings(max_examples=400, deadline=None)
@given(
    balance=money_st,
    credit=money_st,
    margin=money_st,
    digits=st.sampled_from([0, 2, 3, 8]),
    units=st.lists(st.integers(min_value=-(10**18), max_value=10**18), min_size=1, max_size=4),
)
def test_floating_units_is_updated_with_that_floating_result(
    balance: Decimal, credit: Decimal, margin: Decimal, digits: int, units: list[int]
) -> None:
    state = _state(balance, credit, margin, digits)
    for i, n in enumerate(units):  # a chain of quotes: each state the previous one's
        fast = state.floating_units(n)
        if fast is None:  # only a state that left the built list (every 64 states) takes `updated`
            assert i > 0
            assert _BUILT.get(id(state)) is not state
            fast = state.updated(floating=Decimal(n).scaleb(-digits))
        want = state.updated(floating=Decimal(n).scaleb(-digits))
        assert fast == want
        assert _enc.encode(fast) == _enc.encode(want)
        state = fast


def test_margin_level_rounds_half_away_from_zero_at_the_boundary() -> None:
    # equity 100.005 % of margin to the digit: 1000.05 / 1000 × 100 = 100.005 → 100.01; and −100.005 → −100.01
    for balance, level in (("1000.05", "100.01"), ("-1000.05", "-100.01"), ("1000.04", "100.00")):
        state = _state(Decimal(balance), Decimal(0), Decimal(1000), 2)
        fast = state.floating_units(0)
        assert fast is not None
        assert fast.margin_level == Decimal(level)
        assert fast == state.updated(floating=Decimal(0))


def test_floating_units_declines_states_it_did_not_build_and_huge_amounts() -> None:
    state = _state(Decimal("100.5"), Decimal(0), Decimal(10), 2)
    decoded = msgspec.json.decode(_enc.encode(state), type=AccountState)
    assert decoded == state
    assert decoded.floating_units(5) is None  # its money may be off the grid: `updated` quantizes it
    assert state.floating_units(10**30) is None
    negative = _state(Decimal(1000), Decimal(0), Decimal(0), 2)
    assert msgspec.structs.replace(negative, digits=-1).floating_units(1) is None


@settings(max_examples=200, deadline=None)
@given(
    balance=money_st,
    margin=money_st,
    digits=st.sampled_from([0, 2, 5]),
    units=st.lists(st.integers(min_value=-(10**16), max_value=10**16), min_size=1, max_size=6),
)
def test_floating_results_go_on_as_updated_does(
    balance: Decimal, margin: Decimal, digits: int, units: list[int]
) -> None:
    state = _state(balance, Decimal("12.5"), margin, digits)
    results = FloatingResults.start(state)
    assert results is not None
    for n in units:
        want = results.state.updated(floating=Decimal(n).scaleb(-digits))  # `of`'s path for most of them
        got = results.next(n)
        assert got is results.state
        assert got == want
        assert _enc.encode(got) == _enc.encode(want)
    assert results.next(10**26) is None
    assert results.state is got


def test_money_decimal_is_the_scaled_decimal() -> None:
    for units, digits in ((0, 2), (-5, 2), (123456, 3), (10**20, 2), (7, 0)):
        got = money_decimal(units, digits)
        want = Decimal(units).scaleb(-digits)
        assert got == want
        assert str(got) == str(want)
        assert money_decimal(units, digits) is got  # remembered


@settings(max_examples=300, deadline=None)
@given(
    balance=money_st,
    credit=money_st,
    floating=money_st,
    margin=money_st,
    digits=st.sampled_from([0, 2, 3, 8]),
)
def test_of_quantized_is_of_on_amounts_already_quantized(
    balance: Decimal, credit: Decimal, floating: Decimal, margin: Decimal, digits: int
) -> None:
    full = AccountState.of(
        login=7,
        currency="USD",
        leverage=100,
        margin_mode=MarginMode.RETAIL_NETTING,
        balance=balance,
        credit=credit,
        floating=floating,
        margin=abs(margin),
        digits=digits,
    )

    def derived(level: Decimal | None) -> AccountState:
        return AccountState.of_quantized(
            login=7,
            server="",
            currency="USD",
            digits=digits,
            leverage=100,
            margin_mode=MarginMode.RETAIL_NETTING,
            balance=full.balance,
            credit=full.credit,
            floating=full.profit,
            margin=full.margin,
            margin_level=level,
        )

    assert _enc.encode(derived(None)) == _enc.encode(full)
    # a level worked out elsewhere (the terminal's, on integers) is taken as given
    assert _enc.encode(derived(full.margin_level)) == _enc.encode(full)
