"""Pre-trade checks with MT5's retcodes (`aitrading.model.checks`).

Stops-level rules: "Requirements and Limitations in Making Trades" (MQL4 book, appendix; the same table the
MQL5 forum and articles cite, e.g. https://www.mql5.com/en/articles/2555). Retcodes:
https://www.mql5.com/en/docs/constants/errorswarnings/enum_trade_return_codes.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from aitrading.model.accounts import AccountState
from aitrading.model.checks import CheckResult, Retcode, check_request
from aitrading.model.commands import OrderRequest
from aitrading.model.enums import MarginMode, OrderTime, OrderType, TradeAction
from aitrading.model.ids import AccountId, ClientOrderId, TenantId
from aitrading.model.market import Tick
from aitrading.model.values import VOLUME_SCALE, price_raw, volume_raw
from aitrading.mt5 import constants as c
from aitrading.mt5.specs import DEFAULT_SPECS

LOT = VOLUME_SCALE
EURUSD = DEFAULT_SPECS["EURUSD"]  # 5 digits, stops level 10 points, volume 0.01..100 step 0.01
POINT = EURUSD.point_raw
NOW_MS = 1_704_067_200_000
BID, ASK = price_raw("1.10000"), price_raw("1.10010")
TICK = Tick(feed="demo", symbol="EURUSD", time_msc=NOW_MS, bid=BID, ask=ASK)
LEVEL = EURUSD.stops_level * POINT


def account(balance: str = "10000", currency: str = "USD") -> AccountState:
    return AccountState.of(
        login=1,
        currency=currency,
        leverage=100,
        margin_mode=MarginMode.RETAIL_HEDGING,
        balance=Decimal(balance),
    )


def request(**changes: Any) -> OrderRequest:
    fields: dict[str, Any] = {
        "client_order_id": ClientOrderId("AI01HZZZZZZZZZZZZZZZZZZZZZZ"),
        "tenant": TenantId("acme"),
        "account": AccountId("acc-1"),
        "ts_ns": NOW_MS * 1_000_000,
        "symbol": "EURUSD",
        "action": TradeAction.DEAL,
        "type": OrderType.BUY,
        "volume": LOT // 10,
    }
    fields.update(changes)
    return OrderRequest(**fields)


def check(req: OrderRequest, *, acc: AccountState | None = None, market_open: bool = True) -> CheckResult:
    return check_request(req, EURUSD, TICK, acc or account(), now_ms=NOW_MS, market_open=market_open)


def test_retcodes_match_mt5_constants() -> None:
    for code in Retcode:
        assert getattr(c, f"TRADE_RETCODE_{code.name}") == code.value


def test_valid_market_buy_is_done_with_its_margin() -> None:
    result = check(request(sl=BID - 100 * POINT, tp=BID + 100 * POINT))
    assert result.retcode == Retcode.DONE == c.TRADE_RETCODE_DONE
    assert result.ok
    assert result.margin == Decimal("110.01")  # 0.1 lot × 100,000 / 100 = 100 EUR × EURUSD ask 1.10010


def test_malformed_request_is_invalid() -> None:
    assert check(request(volume=0)).retcode == Retcode.INVALID
    assert check(request(type=OrderType.BUY_LIMIT)).retcode == Retcode.INVALID
    assert check(request(symbol="GBPUSD")).retcode == Retcode.INVALID


def test_closed_market() -> None:
    assert (
        check(request(), market_open=False).retcode == Retcode.MARKET_CLOSED == c.TRADE_RETCODE_MARKET_CLOSED
    )


def test_no_quote_is_price_off() -> None:
    tick = Tick(feed="demo", symbol="EURUSD", time_msc=NOW_MS, bid=0, ask=0)
    result = check_request(request(), EURUSD, tick, account(), now_ms=NOW_MS, market_open=True)
    assert result.retcode == Retcode.PRICE_OFF


@pytest.mark.parametrize("volume", ["0.001", "0.015", "100.01", "0.009"])
def test_bad_volumes(volume: str) -> None:
    assert (
        check(request(volume=volume_raw(volume))).retcode
        == Retcode.INVALID_VOLUME
        == c.TRADE_RETCODE_INVALID_VOLUME
    )


@pytest.mark.parametrize("volume", ["0.01", "0.02", "1.37", "100"])
def test_good_volumes_pass_the_volume_check(volume: str) -> None:
    assert check(request(volume=volume_raw(volume)), acc=account("1000000")).retcode == Retcode.DONE


@given(
    steps=st.integers(min_value=1, max_value=10_000), off=st.integers(min_value=1, max_value=LOT // 100 - 1)
)
def test_every_off_grid_volume_is_invalid(steps: int, off: int) -> None:
    volume = steps * EURUSD.volume_step + off
    assert check(request(volume=volume), acc=account("1000000000")).retcode == Retcode.INVALID_VOLUME


def test_no_money() -> None:
    result = check(request(volume=LOT), acc=account("1000"))  # needs 1,100.10 USD
    assert result.retcode == Retcode.NO_MONEY == c.TRADE_RETCODE_NO_MONEY
    assert result.margin == Decimal("1100.10")
    assert check(request(volume=LOT), acc=account("1100.10")).retcode == Retcode.DONE


def test_missing_conversion_rate_is_an_error_not_an_exception() -> None:
    result = check(request(), acc=account(currency="CHF"))
    assert result.retcode == Retcode.ERROR


# --- stops of market orders ---------------------------------------------------------------------------------


def test_buy_sl_exactly_at_the_stops_level_passes_and_one_point_inside_fails() -> None:
    assert check(request(sl=BID - LEVEL)).retcode == Retcode.DONE
    assert (
        check(request(sl=BID - LEVEL + POINT)).retcode
        == Retcode.INVALID_STOPS
        == c.TRADE_RETCODE_INVALID_STOPS
    )
    assert check(request(tp=BID + LEVEL)).retcode == Retcode.DONE
    assert check(request(tp=BID + LEVEL - POINT)).retcode == Retcode.INVALID_STOPS


def test_sell_stops_measure_from_the_ask() -> None:
    sell = {"type": OrderType.SELL}
    assert check(request(**sell, sl=ASK + LEVEL)).retcode == Retcode.DONE
    assert check(request(**sell, sl=ASK + LEVEL - POINT)).retcode == Retcode.INVALID_STOPS
    assert check(request(**sell, tp=ASK - LEVEL)).retcode == Retcode.DONE
    assert check(request(**sell, tp=ASK - LEVEL + POINT)).retcode == Retcode.INVALID_STOPS


def test_stops_on_the_wrong_side() -> None:
    assert check(request(sl=BID + 100 * POINT)).retcode == Retcode.INVALID_STOPS
    assert check(request(tp=BID - 100 * POINT)).retcode == Retcode.INVALID_STOPS
    assert check(request(type=OrderType.SELL, sl=ASK - 100 * POINT)).retcode == Retcode.INVALID_STOPS


def test_stops_off_the_digits_are_invalid() -> None:
    assert check(request(sl=BID - 100 * POINT + 1)).retcode == Retcode.INVALID_STOPS


@given(
    distance=st.integers(min_value=-200, max_value=200), stops_level=st.integers(min_value=0, max_value=100)
)
def test_buy_sl_valid_iff_at_least_the_stops_level_away(distance: int, stops_level: int) -> None:
    spec = msgspec.structs.replace(EURUSD, stops_level=stops_level)
    result = check_request(
        request(sl=BID - distance * POINT), spec, TICK, account(), now_ms=NOW_MS, market_open=True
    )
    ok = distance > 0 and distance >= stops_level
    assert result.retcode == (Retcode.DONE if ok else Retcode.INVALID_STOPS)


# --- pending orders -----------------------------------------------------------------------------------------


def pending(kind: OrderType, price: int, **changes: Any) -> OrderRequest:
    return request(action=TradeAction.PENDING, type=kind, price=price, **changes)


@pytest.mark.parametrize(
    ("kind", "good", "wrong_side"),
    [
        (OrderType.BUY_LIMIT, ASK - LEVEL, ASK + 50 * POINT),
        (OrderType.SELL_LIMIT, BID + LEVEL, BID - 50 * POINT),
        (OrderType.BUY_STOP, ASK + LEVEL, ASK - 50 * POINT),
        (OrderType.SELL_STOP, BID - LEVEL, BID + 50 * POINT),
    ],
)
def test_pending_price_side_and_stops_level(kind: OrderType, good: int, wrong_side: int) -> None:
    assert check(pending(kind, good)).retcode == Retcode.DONE
    assert check(pending(kind, wrong_side)).retcode == Retcode.INVALID_PRICE == c.TRADE_RETCODE_INVALID_PRICE
    inside = good + POINT if kind in (OrderType.BUY_LIMIT, OrderType.SELL_STOP) else good - POINT
    assert check(pending(kind, inside)).retcode == Retcode.INVALID_PRICE


def test_pending_stops_measure_from_the_open_price() -> None:
    price = ASK - 100 * POINT
    assert (
        check(pending(OrderType.BUY_LIMIT, price, sl=price - LEVEL, tp=price + LEVEL)).retcode == Retcode.DONE
    )
    assert (
        check(pending(OrderType.BUY_LIMIT, price, sl=price - LEVEL + POINT)).retcode == Retcode.INVALID_STOPS
    )
    sell = BID + 100 * POINT
    assert (
        check(pending(OrderType.SELL_LIMIT, sell, sl=sell + LEVEL, tp=sell - LEVEL)).retcode == Retcode.DONE
    )
    assert (
        check(pending(OrderType.SELL_LIMIT, sell, tp=sell - LEVEL + POINT)).retcode == Retcode.INVALID_STOPS
    )


def test_stop_limit_needs_its_limit_behind_the_trigger() -> None:
    trigger = ASK + 100 * POINT
    good = pending(OrderType.BUY_STOP_LIMIT, trigger, stoplimit=trigger - LEVEL)
    assert check(good).retcode == Retcode.DONE
    bad = pending(OrderType.BUY_STOP_LIMIT, trigger, stoplimit=trigger + POINT)
    assert check(bad).retcode == Retcode.INVALID_PRICE


def test_pending_price_off_the_digits_is_invalid_price() -> None:
    assert check(pending(OrderType.BUY_LIMIT, ASK - 100 * POINT + 1)).retcode == Retcode.INVALID_PRICE


def test_expired_pending_order() -> None:
    req = pending(
        OrderType.BUY_LIMIT,
        ASK - 100 * POINT,
        type_time=OrderTime.SPECIFIED,
        expiration_ns=NOW_MS * 1_000_000,
    )
    assert check(req).retcode == Retcode.INVALID_EXPIRATION
    later = pending(
        OrderType.BUY_LIMIT,
        ASK - 100 * POINT,
        type_time=OrderTime.SPECIFIED,
        expiration_ns=(NOW_MS + 1) * 1_000_000,
    )
    assert check(later).retcode == Retcode.DONE


def test_other_actions_get_structural_checks_only() -> None:
    sltp = request(action=TradeAction.SLTP, position=7, sl=BID - 100 * POINT)
    result = check(sltp)
    assert result.retcode == Retcode.DONE
    assert "only" in result.comment
    assert check(sltp, market_open=False).retcode == Retcode.MARKET_CLOSED


@given(
    balance=st.sampled_from(["10000", "50", "0"]),
    kind=st.sampled_from([OrderType.BUY, OrderType.SELL, OrderType.BUY_LIMIT, OrderType.SELL_STOP]),
    action=st.sampled_from([TradeAction.DEAL, TradeAction.PENDING, TradeAction.SLTP]),
    volume=st.integers(0, 20).map(lambda n: n * LOT // 100),
    offset=st.integers(-50, 50),
    sl=st.one_of(st.just(0), st.integers(-50, 50)),
)
def test_without_money_the_verdict_is_the_same_up_to_the_money_step(
    balance: str, kind: OrderType, action: TradeAction, volume: int, offset: int, sl: int
) -> None:
    req = request(
        action=action,
        type=kind,
        volume=volume,
        price=ASK + offset * POINT if action is TradeAction.PENDING else 0,
        sl=BID + sl * POINT if sl else 0,
    )
    full = check(req, acc=account(balance))
    without = check_request(req, EURUSD, TICK, account(balance), now_ms=NOW_MS, market_open=True, money=False)
    if full.retcode in (Retcode.DONE, Retcode.NO_MONEY):
        # DONE without the margin worked out (0), where the full check finds it and compares it.
        assert without == CheckResult(retcode=Retcode.DONE, comment=full.comment if full.ok else "Done")
    else:
        assert without == full
