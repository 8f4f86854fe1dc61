"""Shortcuts on the order and quote paths give exactly what the plain formulas gave.

Each test keeps the previous implementation verbatim as the reference (or calls the full path the
shortcut skips) and compares on edge cases and random inputs, so any drift in a digit, an exponent, an
error message or a member shows up.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from aitrading.model._exact import scaled_from_decimal
from aitrading.model.accounts import AccountState
from aitrading.model.commands import OrderRequest, request_problems
from aitrading.model.enums import DealType, MarginMode, OrderType, Side, TradeAction
from aitrading.model.ids import _CROCKFORD, _ulid_body

# --- the previous implementations (reference) ---------------------------------------------------------------


def _old_scaled_from_decimal(value: Decimal, decimals: int) -> int:
    sign, digits, exponent = value.as_tuple()
    if not isinstance(exponent, int):
        raise ValueError(f"{value} is not a finite number")
    n = int("".join(map(str, digits)) or "0")
    shift = exponent + decimals
    if shift >= 0:
        n *= 10**shift
    else:
        unit: int = 10 ** (-shift)
        n, rest = divmod(n, unit)
        if rest:
            raise ValueError(f"{value} has more than {decimals} decimals")
    return -n if sign else n


def _old_encode(n: int, chars: int) -> str:
    out = []
    for _ in range(chars):
        n, r = divmod(n, 32)
        out.append(_CROCKFORD[r])
    return "".join(reversed(out))


def _outcome(fn: object, *args: object) -> object:
    try:
        return fn(*args)  # type: ignore[operator]
    except ValueError as exc:
        return ("ValueError", str(exc))


# --- scaled_from_decimal ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["0", "-0", "0E-30", "1E+5", "-1.5E-17", "1.5E-18", "12.34500", "NaN", "sNaN", "Infinity", "-Infinity"],
)
@pytest.mark.parametrize("decimals", [-2, 0, 2, 9, 17])
def test_scaled_from_decimal_matches_the_digit_by_digit_reading(text: str, decimals: int) -> None:
    value = Decimal(text)
    assert _outcome(scaled_from_decimal, value, decimals) == _outcome(
        _old_scaled_from_decimal, value, decimals
    )


@given(
    st.integers(min_value=-(10**34), max_value=10**34),
    st.integers(min_value=-30, max_value=10),
    st.sampled_from([-3, 0, 2, 8, 9, 17]),
)
def test_scaled_from_decimal_matches_on_random_values(coefficient: int, exponent: int, decimals: int) -> None:
    value = Decimal(f"{coefficient}E{exponent}")
    assert _outcome(scaled_from_decimal, value, decimals) == _outcome(
        _old_scaled_from_decimal, value, decimals
    )


# --- client order ids ---------------------------------------------------------------------------------------


@given(st.integers(min_value=0, max_value=2**60), st.integers(min_value=0, max_value=2**80 - 1))
def test_ulid_body_is_the_time_in_10_and_the_random_part_in_16_crockford_digits(ms: int, random: int) -> None:
    assert _ulid_body(ms, random) == _old_encode(ms, 10) + _old_encode(random, 16)


# --- AccountState.updated with only the floating result ----------------------------------------------------


def _built(**kw: object) -> AccountState:
    fields: dict[str, object] = {
        "login": 7,
        "currency": "USD",
        "leverage": 100,
        "margin_mode": MarginMode.RETAIL_HEDGING,
        "balance": Decimal("10000"),
    }
    fields.update(kw)
    return AccountState.of(**fields)  # type: ignore[arg-type]


def _full_path(state: AccountState, floating: Decimal) -> AccountState:
    return AccountState.of(
        login=state.login,
        server=state.server,
        currency=state.currency,
        digits=state.digits,
        leverage=state.leverage,
        margin_mode=state.margin_mode,
        balance=state.balance,
        credit=state.credit,
        floating=floating,
        margin=state.margin,
    )


def _same(a: AccountState, b: AccountState) -> bool:
    """Equal field by field and written alike (a Decimal's exponent shows in its text)."""
    return msgspec.structs.asdict(a) == msgspec.structs.asdict(b) and repr(a) == repr(b)


amounts = st.decimals(min_value=-(10**9), max_value=10**9, places=6, allow_nan=False, allow_infinity=False)


@given(
    amounts, amounts, st.decimals(min_value=0, max_value=10**7, places=3), amounts, st.sampled_from([0, 2, 3])
)
def test_updating_the_floating_result_of_a_built_state_equals_building_it_afresh(
    balance: Decimal, credit: Decimal, margin: Decimal, floating: Decimal, digits: int
) -> None:
    state = _built(balance=balance, credit=credit, margin=margin, floating=Decimal("1.005"), digits=digits)
    assert _same(state.updated(floating=floating), _full_path(state, floating))


def test_a_decoded_state_with_unquantized_money_takes_the_full_path() -> None:
    built = _built(balance=Decimal("10000"), margin=Decimal("12.5"), floating=Decimal("3"))
    decoded = msgspec.json.decode(
        msgspec.json.encode(msgspec.structs.replace(built, balance=Decimal("10000.004"))), type=AccountState
    )
    updated = decoded.updated(floating=Decimal("-1.115"))
    assert str(updated.balance) == "10000.00"
    assert str(updated.profit) == "-1.12"
    assert str(updated.equity) == "9998.88"
    assert _same(updated, _full_path(decoded, Decimal("-1.115")))
    assert updated.profit == Decimal("-1.115").quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


# --- request_problems on the same request -------------------------------------------------------------------


def _request(**kw: object) -> OrderRequest:
    fields: dict[str, object] = {
        "client_order_id": "AI01",
        "tenant": "t",
        "account": "1",
        "ts_ns": 1,
        "symbol": "EURUSD",
        "action": TradeAction.DEAL,
        "type": OrderType.BUY,
        "volume": 10_000_000,
    }
    fields.update(kw)
    return OrderRequest(**fields)  # type: ignore[arg-type]


def test_request_problems_of_the_same_request_again_and_of_its_equal_copy_agree() -> None:
    bad = _request(client_order_id="bad id!", volume=0)
    first = request_problems(bad)
    assert first
    assert request_problems(bad) == first
    copy = msgspec.msgpack.decode(msgspec.msgpack.encode(bad), type=OrderRequest)
    assert copy is not bad
    assert request_problems(copy) == first
    good = _request()
    assert request_problems(good) == ()
    assert request_problems(bad) == first  # the slot moved on to `good`; `bad` is checked afresh


# --- enum properties read by value --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(OrderType))
def test_order_type_properties_keep_their_definitions(kind: OrderType) -> None:
    assert kind.is_market is (kind.value <= 1)
    assert kind.is_pending is (2 <= kind.value <= 7)
    assert kind.is_stop_limit is (kind.value in (6, 7))
    if kind is OrderType.CLOSE_BY:
        with pytest.raises(ValueError, match="CLOSE_BY"):
            _ = kind.side
    else:
        assert kind.side is Side(kind.value % 2)


@pytest.mark.parametrize("kind", list(DealType))
def test_deal_type_properties_keep_their_definitions(kind: DealType) -> None:
    assert kind.is_trade is (kind.value <= 1)
    if kind.value <= 1:
        assert kind.side is Side(kind.value)
    else:
        with pytest.raises(ValueError, match=f"a {kind.name} deal has no side"):
            _ = kind.side


@pytest.mark.parametrize("side", list(Side))
def test_side_sign_and_prices_keep_their_definitions(side: Side) -> None:
    buy = side is Side.BUY
    assert side.sign == (1 if buy else -1)
    assert type(side.sign) is int
    assert side.entry_price(100, 102) == (102 if buy else 100)
    assert side.exit_price(100, 102) == (100 if buy else 102)


@given(st.integers(-(10**40), 10**40), st.integers(1, 10**30))
def test_div_half_away_rounds_the_exact_ratio_half_away_from_zero(num: int, den: int) -> None:
    import math
    from fractions import Fraction

    from aitrading.model._exact import div_half_away

    exact = Fraction(num, den)
    want = math.floor(abs(exact) + Fraction(1, 2)) * (-1 if exact < 0 else 1)
    assert div_half_away(num, den) == want
    assert div_half_away(num * 7, den * 7) == want  # an unreduced ratio rounds as its reduced form


@given(st.decimals(allow_nan=True, allow_infinity=True, places=None), st.sampled_from([1, 100, 10**5, 10**8]))
def test_units_of_is_the_exact_scaled_whole_number_or_none(value: Decimal, scale: int) -> None:
    from aitrading.model._exact import EXACT_UNITS, units_of

    got = units_of(value, scale)
    if not value.is_finite():
        assert got is None
        return
    num, den = value.as_integer_ratio()
    num *= scale
    if num % den or abs(num // den) >= EXACT_UNITS:
        assert got is None
    else:
        assert got == num // den
