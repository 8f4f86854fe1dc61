"""The simulated terminal's trading calls: MT5 request dicts, result tuples, filters, calcs, persistence.

Hand-computed cross-currency figures (USD account, 1:100):
- EURGBP margin: 1 lot = 100,000 EUR / 100 = 1,000 EUR, converted through EURUSD at its ask for a BUY
  (1.08510 → 1,085.10 USD) and its bid for a SELL (1.08500 → 1,085.00 USD); the EURGBP price plays no part
  in FOREX mode.
- USDJPY profit: 1 lot from 150.000 to 151.000 = 100,000 JPY; a gain is sold at USDJPY's ask,
  100,000 / 150.012 = 666.61 USD; the same loss is bought back at the bid, 100,000 / 150.000 = 666.67 USD.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from mt5_helpers import clock_at, model_tick, must
from mt5_trading_helpers import EURGBP, T0, at, px, request, tick

import aitrading.mt5 as mt5
from aitrading.common.clock import TestClock
from aitrading.common.config import SimulatorConfig
from aitrading.common.errors import ConfigError
from aitrading.model.market import Tick
from aitrading.mt5 import ReplayTickSource, SimulatedTerminal, default_specs
from aitrading.mt5.sim import ExecutionSettings, SimAccount, SimBroker
from aitrading.mt5.types import TradeRequest

BUY = {"action": mt5.TRADE_ACTION_DEAL, "symbol": "EURUSD", "volume": 0.1, "type": mt5.ORDER_TYPE_BUY}


def open_terminal(
    ticks: Iterable[Tick],
    *symbols: str,
    now_ms: int = T0 + 1_000,
    execution: ExecutionSettings | None = None,
    account: SimAccount | None = None,
) -> tuple[SimulatedTerminal, TestClock]:
    specs = default_specs(*(s for s in symbols or ("EURUSD",) if s != "EURGBP"))
    if "EURGBP" in symbols:
        specs["EURGBP"] = EURGBP
    clock = clock_at(now_ms)
    terminal = SimulatedTerminal(clock, specs, ReplayTickSource(ticks), execution=execution, account=account)
    assert terminal.initialize()
    return terminal, clock


def eurusd(ms: int = T0, bid: str = "1.08500", ask: str = "1.08510") -> Tick:
    return model_tick(ms, bid, ask)


def test_order_send_converts_the_dict_exactly_and_answers_mt5s_result_tuple() -> None:
    terminal, _ = open_terminal([eurusd()])
    request = {
        **BUY,
        "price": 1.085104,  # rounded to the symbol's 5 digits: 1.08510
        "deviation": 10,
        "sl": 1.08,
        "tp": 1.09,
        "type_filling": mt5.ORDER_FILLING_IOC,
        "comment": "AI01HQ7Z3K8R2M5N9P4T6V8X0Y",
        "magic": 5,
    }
    result = must(terminal.order_send(request))
    assert (result.retcode, result.comment, result.volume, result.price) == (
        10009,
        "Request executed",
        0.1,
        1.0851,
    )
    assert (result.bid, result.ask, result.request_id) == (1.085, 1.0851, 1)
    assert result.request == TradeRequest(
        action=1,
        magic=5,
        symbol="EURUSD",
        volume=0.1,
        price=1.085104,
        sl=1.08,
        tp=1.09,
        deviation=10,
        type_filling=1,
        comment="AI01HQ7Z3K8R2M5N9P4T6V8X0Y",
    )
    (position,) = must(terminal.positions_get())
    assert (position.ticket, position.identifier, position.type, position.volume) == (
        result.order,
        result.order,
        0,
        0.1,
    )
    assert (position.price_open, position.sl, position.tp, position.price_current) == (
        1.0851,
        1.08,
        1.09,
        1.085,
    )
    assert (position.comment, position.magic, position.reason) == (
        request["comment"],
        5,
        mt5.POSITION_REASON_EXPERT,
    )
    assert (position.profit, position.time_msc) == (-1.0, T0 + 1_000)
    (order,) = must(terminal.history_orders_get(ticket=result.order))
    assert (order.state, order.type_filling, order.comment, order.position_id) == (
        mt5.ORDER_STATE_FILLED,
        mt5.ORDER_FILLING_IOC,
        request["comment"],
        result.order,
    )
    (deal,) = must(terminal.history_deals_get(ticket=result.order))  # by order ticket, as MT5 does
    assert (deal.ticket, deal.entry, deal.price, deal.reason) == (result.deal, mt5.DEAL_ENTRY_IN, 1.0851, 3)


@pytest.mark.parametrize(
    ("request_", "error"),
    [
        ("not a dict", (mt5.RES_E_INVALID_PARAMS, "Terminal: Invalid params")),
        ({**BUY, "volumes": 0.1}, (mt5.RES_E_INVALID_PARAMS, 'Invalid "volumes" argument')),
        ({**BUY, "action": 99}, (mt5.RES_E_INVALID_PARAMS, 'Invalid "action" argument')),
        ({"symbol": "EURUSD", "volume": 0.1}, (mt5.RES_E_INVALID_PARAMS, 'Invalid "action" argument')),
        ({**BUY, "volume": "0.1"}, (mt5.RES_E_INVALID_PARAMS, 'Invalid "volume" argument')),
        ({**BUY, "volume": True}, (mt5.RES_E_INVALID_PARAMS, 'Invalid "volume" argument')),
        ({**BUY, "price": float("nan")}, (mt5.RES_E_INVALID_PARAMS, 'Invalid "price" argument')),
        ({**BUY, "type": 1.0}, (mt5.RES_E_INVALID_PARAMS, 'Invalid "type" argument')),
        ({**BUY, "comment": 7}, (mt5.RES_E_INVALID_PARAMS, 'Invalid "comment" argument')),
        ({**BUY, "expiration": "tomorrow"}, (mt5.RES_E_INVALID_PARAMS, 'Invalid "expiration" argument')),
    ],
)
def test_malformed_request_dicts_fail_with_none_and_last_error_like_the_package(
    request_: Any, error: tuple[int, str]
) -> None:
    terminal, _ = open_terminal([eurusd()])
    assert terminal.order_send(request_) is None
    assert terminal.last_error() == error
    assert terminal.order_check(request_) is None
    assert must(terminal.positions_get()) == ()


@pytest.mark.parametrize(
    ("changes", "retcode", "comment"),
    [
        ({"volume": 0.001}, mt5.TRADE_RETCODE_INVALID_VOLUME, "Invalid volume"),
        ({"symbol": "NOPE"}, mt5.TRADE_RETCODE_INVALID, "Invalid request"),
        ({"sl": 1.08495}, mt5.TRADE_RETCODE_INVALID_STOPS, "Invalid stops"),  # 5 points; the level is 10
        ({"volume": 50.0}, mt5.TRADE_RETCODE_NO_MONEY, "No money"),
        (
            {"type_filling": mt5.ORDER_FILLING_RETURN},
            mt5.TRADE_RETCODE_INVALID_FILL,
            "Unsupported filling mode",
        ),
        ({"comment": "x" * 32}, mt5.TRADE_RETCODE_INVALID, "Invalid request"),  # MT5 keeps 31 characters
    ],
)
def test_requests_the_server_refuses_come_back_with_the_retcode(
    changes: dict[str, Any], retcode: int, comment: str
) -> None:
    terminal, _ = open_terminal([eurusd()])
    result = must(terminal.order_send({**BUY, **changes}))
    assert (result.retcode, result.comment, result.deal, result.order) == (retcode, comment, 0, 0)
    assert terminal.last_error() == (mt5.RES_S_OK, "Success")
    check = must(terminal.order_check({**BUY, **changes}))
    assert (check.retcode, check.balance, check.request.volume) == (retcode, 0.0, changes.get("volume", 0.1))


def test_order_check_answers_zero_and_the_account_after_the_trade() -> None:
    terminal, _ = open_terminal([eurusd()])
    check = must(terminal.order_check({**BUY, "volume": 1.0}))
    assert (check.retcode, check.comment, check.margin, check.margin_free) == (0, "Done", 1085.1, 8914.9)
    assert (check.balance, check.equity, check.margin_level) == (10000.0, 10000.0, 921.57)
    assert must(terminal.positions_get()) == ()


def test_market_closed_outside_the_fx_week_through_the_terminal() -> None:
    friday_21h = T0 + 4 * 86_400_000 + 15 * 3_600_000
    terminal, clock = open_terminal([eurusd(friday_21h)], now_ms=friday_21h + 1_000)
    assert must(terminal.order_send(BUY)).retcode == 10009
    clock.set_ns((friday_21h + 3_600_000) * 1_000_000)  # Friday 22:00: the week is over
    assert must(terminal.order_send(BUY)).retcode == mt5.TRADE_RETCODE_MARKET_CLOSED


def test_order_calc_margin_of_eurgbp_converts_through_eurusd_by_hand() -> None:
    ticks = [
        eurusd(T0),
        model_tick(T0 + 1, "0.85700", "0.85710", symbol="EURGBP"),
    ]
    terminal, _ = open_terminal(ticks, "EURUSD", "EURGBP")
    assert terminal.order_calc_margin(mt5.ORDER_TYPE_BUY, "EURGBP", 1.0, 0.8571) == 1085.10
    assert terminal.order_calc_margin(mt5.ORDER_TYPE_SELL, "EURGBP", 1.0, 0.857) == 1085.00
    assert terminal.order_calc_margin(mt5.ORDER_TYPE_BUY_LIMIT, "EURGBP", 0.25, 0.85) == 271.28  # 271.275 up
    assert terminal.order_calc_margin(mt5.ORDER_TYPE_BUY, "NOPE", 1.0, 1.0) is None
    assert terminal.last_error()[0] == mt5.RES_E_NOT_FOUND
    assert terminal.order_calc_margin(mt5.ORDER_TYPE_CLOSE_BY, "EURGBP", 1.0, 1.0) is None
    assert terminal.last_error() == (mt5.RES_E_INVALID_PARAMS, 'Invalid "action" argument')
    # EURGBP profit is in GBP and no GBPUSD is quoted here: the terminal cannot convert it, so it neither
    # calculates the profit nor opens a position it could not value.
    assert terminal.order_calc_profit(mt5.ORDER_TYPE_BUY, "EURGBP", 1.0, 0.857, 0.858) is None
    assert terminal.last_error()[0] == mt5.RES_E_FAIL
    refused = must(terminal.order_send({**BUY, "symbol": "EURGBP"}))
    assert (refused.retcode, refused.comment) == (mt5.TRADE_RETCODE_ERROR, "Request processing error")


def test_eurgbp_trades_once_gbpusd_converts_its_profit() -> None:
    ticks = [
        eurusd(T0),
        model_tick(T0 + 1, "1.26500", "1.26520", symbol="GBPUSD"),
        model_tick(T0 + 2, "0.85700", "0.85710", symbol="EURGBP"),
        model_tick(T0 + 2_000, "0.85800", "0.85810", symbol="EURGBP"),
    ]
    terminal, clock = open_terminal(ticks, "EURUSD", "GBPUSD", "EURGBP")
    opened = must(terminal.order_send({**BUY, "symbol": "EURGBP", "volume": 1.0}))
    assert opened.retcode == 10009
    assert must(terminal.account_info()).margin == 1085.10
    clock.advance(2)
    closed = must(
        terminal.order_send({**BUY, "symbol": "EURGBP", "volume": 1.0, "type": 1, "position": opened.order})
    )
    # 0.00090 × 100,000 = 90 GBP, sold at GBPUSD's bid 1.26500 = 113.85 USD.
    assert must(terminal.history_deals_get(ticket=closed.order))[0].profit == 113.85


def test_usdjpy_profit_in_a_usd_account_by_hand_and_a_round_trip_books_the_same() -> None:
    ticks = [
        model_tick(T0, "150.000", "150.012", symbol="USDJPY"),
        model_tick(T0 + 2_000, "151.000", "151.012", symbol="USDJPY"),
    ]
    terminal, clock = open_terminal(ticks, "USDJPY")
    assert terminal.order_calc_profit(mt5.ORDER_TYPE_BUY, "USDJPY", 1.0, 150.0, 151.0) == 666.61
    assert terminal.order_calc_profit(mt5.ORDER_TYPE_SELL, "USDJPY", 1.0, 150.0, 151.0) == -666.67
    opened = must(terminal.order_send({**BUY, "symbol": "USDJPY", "volume": 1.0}))
    assert opened.price == 150.012
    clock.advance(2)
    closed = must(
        terminal.order_send({**BUY, "symbol": "USDJPY", "volume": 1.0, "type": 1, "position": opened.order})
    )
    assert closed.price == 151.0
    (_, out) = must(terminal.history_deals_get(position=opened.order))
    # 0.988 × 100,000 = 98,800 JPY / 151.012 = 654.25 USD.
    assert out.profit == 654.25
    assert out.profit == terminal.order_calc_profit(mt5.ORDER_TYPE_BUY, "USDJPY", 1.0, 150.012, 151.0)
    assert must(terminal.account_info()).balance == 10654.25


def test_positions_orders_and_history_filter_like_the_package() -> None:
    ticks = [eurusd(T0), model_tick(T0 + 1, "150.000", "150.012", symbol="USDJPY")]
    terminal, clock = open_terminal(ticks, "EURUSD", "USDJPY")
    eur = must(terminal.order_send(BUY)).order
    jpy = must(terminal.order_send({**BUY, "symbol": "USDJPY"})).order
    limit = {"action": mt5.TRADE_ACTION_PENDING, "symbol": "USDJPY", "volume": 0.1, "type": 2, "price": 149.0}
    pending = must(terminal.order_send(limit)).order
    assert [p.ticket for p in must(terminal.positions_get())] == [eur, jpy]
    assert [p.ticket for p in must(terminal.positions_get(symbol="USDJPY"))] == [jpy]
    assert [p.ticket for p in must(terminal.positions_get(group="*JPY*"))] == [jpy]
    assert [p.ticket for p in must(terminal.positions_get(group="*,!*JPY*"))] == [eur]
    assert [p.ticket for p in must(terminal.positions_get(ticket=eur))] == [eur]
    assert must(terminal.positions_get(symbol="GBPUSD")) == ()
    assert [o.ticket for o in must(terminal.orders_get(symbol="USDJPY"))] == [pending]
    assert must(terminal.orders_get(group="EUR*")) == ()
    (placed,) = must(terminal.orders_get(ticket=pending))
    assert (placed.state, placed.type, placed.price_open) == (mt5.ORDER_STATE_PLACED, 2, 149.0)
    clock.advance(60)
    must(terminal.order_send({**BUY, "type": 1, "position": eur, "comment": "closing"}))
    start, now = datetime(2024, 3, 4, 6, tzinfo=UTC), clock.utcnow()
    assert [o.ticket for o in must(terminal.history_orders_get(start, now))] == [eur, jpy, eur + 3]
    assert [o.ticket for o in must(terminal.history_orders_get(start, now, group="*JPY*"))] == [jpy]
    assert [o.comment for o in must(terminal.history_orders_get(position=eur))] == ["", "closing"]
    assert [d.entry for d in must(terminal.history_deals_get(position=eur))] == [0, 1]
    assert len(must(terminal.history_deals_get(start, now))) == 3
    assert must(terminal.history_deals_get(now, now)) != ()  # the closing deal is at the clock's second
    assert must(terminal.history_deals_get(int(start.timestamp()), int(start.timestamp()))) == ()
    assert terminal.history_deals_get() is None
    assert terminal.last_error()[0] == mt5.RES_E_INVALID_PARAMS
    assert terminal.positions_get(ticket="1") is None  # type: ignore[arg-type]


def test_every_tick_passes_through_the_broker_so_an_sl_between_polls_fires() -> None:
    ticks = [eurusd(T0), eurusd(T0 + 2_000, "1.08290", "1.08300"), eurusd(T0 + 3_000, "1.08600", "1.08610")]
    terminal, clock = open_terminal(ticks)
    opened = must(terminal.order_send({**BUY, "sl": 1.083}))
    clock.advance(5)  # one poll releases both ticks; only the first of them touches the SL
    assert must(terminal.symbol_info_tick("EURUSD")).bid == 1.086
    assert must(terminal.positions_get()) == ()
    (_, out) = must(terminal.history_deals_get(position=opened.order))
    assert (out.reason, out.price, out.time_msc, out.comment) == (
        mt5.DEAL_REASON_SL,
        1.0829,
        T0 + 2_000,
        "[sl 1.08300]",
    )


def test_account_info_reports_the_brokers_money_and_allows_trading() -> None:
    ticks = [eurusd(T0), eurusd(T0 + 2_000, "1.08600", "1.08610")]
    terminal, clock = open_terminal(ticks, account=SimAccount(balance=Decimal(5000), leverage=200))
    must(terminal.order_send({**BUY, "volume": 1.0}))
    clock.advance(2)
    info = must(terminal.account_info())
    # 1 lot from 1.08510 to bid 1.08600 = +90; margin 100,000 / 200 = 500 EUR × ask 1.08610 = 543.05.
    assert (info.balance, info.profit, info.equity, info.margin) == (5000.0, 90.0, 5090.0, 543.05)
    assert (info.margin_free, info.margin_level) == (4546.95, 937.3)  # 5,090 / 543.05 = 937.298 %
    assert (info.trade_allowed, info.trade_expert, info.leverage) == (True, True, 200)
    assert info.margin_mode == mt5.ACCOUNT_MARGIN_MODE_RETAIL_HEDGING


def test_the_books_survive_a_restart_from_the_state_file(tmp_path: Path) -> None:
    state = tmp_path / "broker" / "books.msgpack"
    settings = ExecutionSettings(state_path=state, commission_per_lot=Decimal(3))
    ticks = [eurusd(T0), eurusd(T0 + 2_000, "1.08600", "1.08610")]
    first, clock = open_terminal(ticks, execution=settings)
    cid = "AI01HQ7Z3K8R2M5N9P4T6V8X0Y"
    opened = must(first.order_send({**BUY, "volume": 1.0, "comment": cid, "magic": 1}))
    pending = must(
        first.order_send(
            {"action": 5, "symbol": "EURUSD", "volume": 0.2, "type": 2, "price": 1.08, "comment": "p1"}
        )
    )
    must(first.order_send({**BUY, "volume": 0.3, "type": 1, "position": opened.order}))
    clock.advance(2)
    before = (
        must(first.positions_get()),
        must(first.orders_get()),
        must(first.history_orders_get(ticket=opened.order)),
        must(first.history_deals_get(0, clock.utcnow())),
        must(first.account_info()).balance,
    )
    assert list(state.parent.iterdir()) == [state]  # no temporary file left behind
    # No shutdown: the process "dies" here and a new terminal starts on the same state file.
    second, _ = open_terminal(ticks, execution=settings, now_ms=T0 + 3_000)
    after = (
        must(second.positions_get()),
        must(second.orders_get()),
        must(second.history_orders_get(ticket=opened.order)),
        must(second.history_deals_get(0, clock.utcnow())),
        must(second.account_info()).balance,
    )
    assert after == before
    assert [o.comment for o in after[2]] == [cid]  # the agent finds its order by comment after a crash
    assert before[4] == 9993.1  # commissions 3 + 0.9, and 0.3 lot closed 1 pip under its open: −3
    again = must(second.order_send(BUY))
    assert again.order > pending.order
    assert again.deal > before[3][-1].ticket


def test_a_state_file_of_another_account_kind_or_garbage_is_refused(tmp_path: Path) -> None:
    state = tmp_path / "books.msgpack"
    hedging, _ = open_terminal([eurusd()], execution=ExecutionSettings(state_path=state))
    must(hedging.order_send(BUY))
    netting = SimAccount(margin_mode=mt5.ACCOUNT_MARGIN_MODE_RETAIL_NETTING)
    with pytest.raises(ConfigError, match="hedging"):
        open_terminal([eurusd()], execution=ExecutionSettings(state_path=state), account=netting)
    state.write_bytes(b"\x00not msgpack")
    with pytest.raises(ConfigError, match="unreadable"):
        open_terminal([eurusd()], execution=ExecutionSettings(state_path=state))


def test_simulator_config_configures_the_account_and_the_execution(tmp_path: Path) -> None:
    sim = SimulatorConfig(
        balance=Decimal(2500),
        currency="EUR",
        leverage=30,
        hedging=False,
        slippage_points=3,
        requote_probability=0.1,
        commission_per_lot=Decimal("3.5"),
        state_path=tmp_path / "b.msgpack",
        seed=9,
    )
    account = SimAccount.from_config(sim)
    assert (account.balance, account.currency, account.leverage) == (Decimal(2500), "EUR", 30)
    assert account.margin_mode == mt5.ACCOUNT_MARGIN_MODE_RETAIL_NETTING
    execution = ExecutionSettings.from_config(sim)
    assert execution == ExecutionSettings(
        slippage_points=3,
        requote_probability=0.1,
        commission_per_lot=Decimal("3.5"),
        always_open=True,
        seed=9,
        state_path=tmp_path / "b.msgpack",
    )
    with pytest.raises(ValueError, match="requote_probability"):
        SimulatorConfig(requote_probability=1.5)
    with pytest.raises(ConfigError):
        ExecutionSettings(slippage_points=-1)


def test_tick_driven_changes_are_saved_without_any_request(tmp_path: Path) -> None:
    settings = ExecutionSettings(state_path=tmp_path / "books.msgpack")
    live = SimBroker(default_specs("EURUSD"), settings=settings)
    live.on_tick(tick("EURUSD", "1.08500", "1.08510", T0))
    ticket = live.order_send(request(sl=px("1.08300"), comment="cid-9"), at(T0 + 1)).order
    assert [p.ticket for p in SimBroker(default_specs("EURUSD"), settings=settings).positions] == [ticket]
    live.on_tick(tick("EURUSD", "1.08290", "1.08300", T0 + 2))  # the SL fires on this tick
    restored = SimBroker(default_specs("EURUSD"), settings=settings)
    assert restored.positions == ()
    assert [(d.reason, d.comment) for d in restored.deals] == [
        (3, "cid-9"),
        (mt5.DEAL_REASON_SL, "[sl 1.08300]"),
    ]
    # 1 lot from the ask 1.08510 out at the bid 1.08290: −0.00220 × 100,000 = −220 USD.
    assert restored.state.balance == live.state.balance == Decimal("9780.00")
