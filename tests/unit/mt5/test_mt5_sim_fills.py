"""The simulated broker's market-deal shortcuts give what the exact paths give.

`Ledger.plan_fill` opens a new position and closes a whole one itself (in integers) rather than through
`model.positions.apply_deal_hedging`/`_netting`; it tells `_cost_raw` the cost of what it opens; `no_money`
answers a fill that leaves no position at once; `Requests._check` reuses one unlimited account state and
leaves the margin out of `check_request` (finding only whether it could be computed); the commission is
memoised; `_filling` is an if-chain. Each is compared here with the general computation.
"""

from __future__ import annotations

import random
from decimal import Decimal
from fractions import Fraction

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mt5_helpers import MONDAY_MS
from mt5_trading_helpers import EURGBP

from aitrading.model._exact import notional_decimal
from aitrading.model.accounts import AccountState
from aitrading.model.calc import money_of, to_money
from aitrading.model.checks import check_request
from aitrading.model.commands import OrderRequest
from aitrading.model.enums import OrderFilling, OrderState, OrderType, Side, TradeAction
from aitrading.model.ids import AccountId, ClientOrderId, TenantId
from aitrading.model.market import Tick
from aitrading.model.positions import Position, apply_deal_hedging, apply_deal_netting
from aitrading.model.values import PRICE_SCALE, VOLUME_SCALE
from aitrading.mt5 import constants as c
from aitrading.mt5.sim._ledger import Ledger
from aitrading.mt5.sim._requests import _LIMIT_LIKE, Requests
from aitrading.mt5.sim.account import ExecutionSettings, SimAccount
from aitrading.mt5.sim.answers import Refused
from aitrading.mt5.sim.book import Book, BookOrder
from aitrading.mt5.specs import DEFAULT_SPECS

# A symbol without a margin formula (FUTURES): check_request's margin step answers ERROR.
EURUSD_FUT = msgspec.structs.replace(DEFAULT_SPECS["EURUSD"], name="EURUSDF", trade_calc_mode=1)
SPECS = {**DEFAULT_SPECS, "EURGBP": EURGBP, "EURUSDF": EURUSD_FUT}
SYMBOLS = ["EURUSD", "USDJPY", "EURGBP", "XAUUSD", "GBPJPY"]
QUOTED = ["EURUSD", "USDJPY", "EURGBP", "XAUUSD", "GBPJPY", "GBPUSD"]
ENC = msgspec.json.Encoder(decimal_format="string")
MONDAY_NS = (MONDAY_MS + 12 * 3_600_000) * 1_000_000  # the market is open
prices = st.integers(min_value=PRICE_SCALE // 10, max_value=300 * PRICE_SCALE)
volumes = st.integers(min_value=1, max_value=50).map(lambda n: n * VOLUME_SCALE // 100)
position_st = st.tuples(
    st.sampled_from(SYMBOLS), st.sampled_from([Side.BUY, Side.SELL]), volumes, prices, st.integers(0, 10**8)
)


def _ledger(positions: list[tuple[str, Side, int, int, int]], *, hedging: bool, commission: str) -> Ledger:
    account = SimAccount(leverage=100)
    book = Book(login=account.login, currency="USD", hedging=hedging, balance=Decimal("100000"))
    seen: set[str] = set()
    for n, (symbol, side, volume, price, extra) in enumerate(positions, start=1):
        if not hedging and symbol in seen:
            continue  # netting: one position per symbol
        seen.add(symbol)
        book.positions[n] = Position(
            ticket=n,
            identifier=n,
            symbol=symbol,
            type=side,
            volume=volume,
            cost=notional_decimal(price * volume + extra),  # an average price off the grid
            time_ns=n,
        )
    settings_ = ExecutionSettings(commission_per_lot=Decimal(commission))
    return Ledger(SPECS, account, settings_, book)


def _quote(ledger: Ledger, symbol: str, bid: int, spread: int) -> None:
    ledger.quotes.ticks[symbol] = Tick(feed="SIM", symbol=symbol, time_msc=1, bid=bid, ask=bid + spread)


def _order(ticket: int, symbol: str, side: Side, volume: int, price: int) -> BookOrder:
    return BookOrder(
        ticket=ticket,
        symbol=symbol,
        type=OrderType(side.value),
        state=OrderState.STARTED,
        volume_initial=volume,
        volume_current=volume,
        price_open=price,
        price_current=price,
        magic=7,
        comment="c",
        reason=c.ORDER_REASON_EXPERT,
        time_setup_ns=99,
    )


@settings(max_examples=400, deadline=None)
@given(
    hedging=st.booleans(),
    commission=st.sampled_from(["0", "3.5", "0.01"]),
    held=st.lists(position_st, min_size=0, max_size=4),
    quotes=st.lists(st.tuples(prices, st.integers(1, 10**6)), min_size=len(QUOTED), max_size=len(QUOTED)),
    choice=st.integers(0, 10),
    kind=st.sampled_from(["open", "whole", "part", "more"]),
    side=st.sampled_from([Side.BUY, Side.SELL]),
    symbol=st.sampled_from(SYMBOLS),
    volume=volumes,
    price=prices,
)
def test_a_planned_fill_equals_the_exact_deal_arithmetic(
    hedging: bool,
    commission: str,
    held: list[tuple[str, Side, int, int, int]],
    quotes: list[tuple[int, int]],
    choice: int,
    kind: str,
    side: Side,
    symbol: str,
    volume: int,
    price: int,
) -> None:
    ledger = _ledger(held, hedging=hedging, commission=commission)
    for name, (bid, spread) in zip(QUOTED, quotes, strict=True):
        _quote(ledger, name, bid, spread)
    ledger.revalue()  # (with several positions: their margined legs are kept for the next quote)
    book = ledger.book
    target = 0
    if kind != "open" and book.positions:
        closed = list(book.positions.values())[choice % len(book.positions)]
        symbol, side = closed.symbol, closed.type.opposite
        volume = {"whole": closed.volume, "part": max(1, closed.volume // 3), "more": closed.volume + volume}[
            kind
        ]
        target = closed.identifier if hedging else 0
        if hedging and kind == "more":
            volume = closed.volume
    order = _order(1_000_001, symbol, side, volume, price)
    plan = ledger.plan_fill(order, side, volume, price, 5, target=target)

    # The exact path: the same deal through `model.positions`, with the ledger's exact profit function.
    deal = msgspec.structs.replace(plan.deal, profit=Decimal(0))
    per_lot = Fraction(Decimal(commission))
    assert deal.commission == (-to_money(per_lot * Fraction(volume, VOLUME_SCALE), 2) if per_lot else 0)
    assert ledger.commission(volume) is deal.commission or not per_lot  # memoised
    if hedging:
        want, realised = apply_deal_hedging(book.positions, deal, ledger.profit_fn)
    else:
        current = ledger.netting_position(symbol)
        after, realised = apply_deal_netting(current, deal, ledger.profit_fn)
        want = dict(book.positions)
        if current is not None:
            del want[current.identifier]
        if after is not None:
            want[after.identifier] = after
    assert ENC.encode(plan.deal.profit) == ENC.encode(realised)
    assert ENC.encode(list(plan.positions.items())) == ENC.encode(list(want.items()))
    for p in plan.positions.values():
        assert ledger._cost_raw(p) == p.cost_raw
    margin, free = ledger.margin_after(plan)
    assert ledger.no_money(plan) is (margin > ledger.state.margin and free < 0)
    # The books after it, valued: the state made from minor units is `AccountState.of` to the last digit.
    ledger.commit(plan)
    ledger.revalue()
    state = ledger.state
    want_state = AccountState.of(
        login=state.login,
        currency="USD",
        leverage=100,
        margin_mode=state.margin_mode,
        balance=ledger.book.balance,
        floating=sum((p.profit + p.swap for p in ledger.book.positions.values()), Decimal(0)),
        margin=state.margin,
    )
    assert ENC.encode(state) == ENC.encode(want_state)
    # The margin after the fill is the books' (not the legs kept from before it), and stays so on a quote.
    fresh = money_of(*ledger._margin(list(ledger.book.positions.values())), 2)
    assert ENC.encode(state.margin) == ENC.encode(fresh)
    for name, (bid, spread) in zip(QUOTED, quotes, strict=True):
        _quote(ledger, name, bid + 7 * spread, spread)
    ledger.revalue()
    fresh = money_of(*ledger._margin(list(ledger.book.positions.values())), 2)
    assert ENC.encode(ledger.state.margin) == ENC.encode(fresh)


def test_no_money_for_a_fill_that_leaves_no_position_is_false_even_when_broke() -> None:
    ledger = _ledger([("EURUSD", Side.BUY, VOLUME_SCALE, PRICE_SCALE, 0)], hedging=True, commission="3.5")
    _quote(ledger, "EURUSD", PRICE_SCALE // 2, 10)
    ledger.book.balance = Decimal("-1000")
    ledger.revalue()
    plan = ledger.plan_fill(
        _order(9, "EURUSD", Side.SELL, VOLUME_SCALE, PRICE_SCALE // 2),
        Side.SELL,
        VOLUME_SCALE,
        PRICE_SCALE // 2,
        5,
        target=1,
    )
    assert not plan.positions
    margin, free = ledger.margin_after(plan)
    assert free < 0
    assert margin == 0
    assert ledger.no_money(plan) is False


def _request(**fields: object) -> OrderRequest:
    base: dict[str, object] = {
        "client_order_id": ClientOrderId("c1"),
        "tenant": TenantId("t"),
        "account": AccountId("a"),
        "ts_ns": 0,
        "symbol": "EURUSD",
        "action": TradeAction.DEAL,
        "type": OrderType.BUY,
        "volume": VOLUME_SCALE,
    }
    base.update(fields)
    return OrderRequest(**base)  # type: ignore[arg-type]


@settings(max_examples=400, deadline=None)
@given(
    balance=st.sampled_from(["100000", "10", "-5"]),
    kind=st.sampled_from([OrderType.BUY, OrderType.SELL, OrderType.BUY_LIMIT]),
    volume=st.one_of(volumes, st.integers(0, 3 * VOLUME_SCALE)),
    sl=st.one_of(st.just(None), st.integers(-300, 300)),
    tp=st.one_of(st.just(None), st.integers(-300, 300)),
    symbol=st.sampled_from(["EURUSD", "EURGBP", "USDJPY", "EURUSDF"]),
    quoted=st.booleans(),
)
def test_a_market_check_refuses_what_the_full_check_refuses(
    balance: str, kind: OrderType, volume: int, sl: int | None, tp: int | None, symbol: str, quoted: bool
) -> None:
    ledger = _ledger([], hedging=True, commission="0")
    requests = Requests(ledger)
    _quote(ledger, symbol, PRICE_SCALE, 20_000)
    if quoted:
        _quote(ledger, "EURUSD", PRICE_SCALE + PRICE_SCALE // 4, 20_000)
    for step in range(2):  # the shared state is made on the first request and kept
        ledger.book.balance = Decimal(balance) + step
        ledger.revalue()
        spec, tick = requests._spec(symbol)
        action = TradeAction.PENDING if kind is OrderType.BUY_LIMIT else TradeAction.DEAL
        price = tick.ask - 100 * spec.point_raw if action is TradeAction.PENDING else tick.ask
        stops = {
            name: 0 if points is None else tick.bid + points * spec.point_raw
            for name, points in (("sl", sl), ("tp", tp))
        }
        request = _request(action=action, symbol=symbol, type=kind, volume=volume, price=price, **stops)
        account = msgspec.structs.replace(ledger.state, margin_free=Decimal("Infinity"))
        want = check_request(
            request,
            spec,
            tick,
            account,
            now_ms=MONDAY_NS // 1_000_000,
            market_open=requests.market_open(MONDAY_NS),
            rates=ledger.quotes,
        )
        if want.ok:
            got = requests._check(request, spec, tick, MONDAY_NS)
            assert (got.retcode, got.comment) == (want.retcode, want.comment)
        else:
            with pytest.raises(Refused) as refused:
                requests._check(request, spec, tick, MONDAY_NS)
            assert (refused.value.retcode, refused.value.detail) == (want.retcode, want.comment)


@pytest.mark.parametrize(
    ("symbol", "quoted", "detail"),
    [
        ("EURUSDF", True, "cannot compute margin: EURUSDF: margin for calc mode 1 is not supported"),
        ("EURGBP", False, "cannot compute margin: no quote of EURUSD or USDEUR to convert EUR"),
    ],
)
def test_a_margin_that_cannot_be_computed_is_an_error(symbol: str, quoted: bool, detail: str) -> None:
    ledger = _ledger([], hedging=True, commission="0")
    _quote(ledger, symbol, PRICE_SCALE, 20_000)
    if quoted:
        _quote(ledger, "EURUSD", PRICE_SCALE, 20_000)
    spec, tick = Requests(ledger)._spec(symbol)
    request = _request(symbol=symbol)
    full = check_request(request, spec, tick, ledger.state, now_ms=0, market_open=True, rates=ledger.quotes)
    assert (full.retcode, full.comment) == (c.TRADE_RETCODE_ERROR, detail)  # what the broker said before
    with pytest.raises(Refused) as refused:
        Requests(ledger)._check(request, spec, tick, MONDAY_NS)
    assert (refused.value.retcode, refused.value.detail) == (c.TRADE_RETCODE_ERROR, detail)


@pytest.mark.parametrize("filling_mode", range(8))
@pytest.mark.parametrize("kind", list(OrderType))
@pytest.mark.parametrize("filling", list(OrderFilling))
def test_filling_rules_are_the_fill_policy_table(
    filling_mode: int, kind: OrderType, filling: OrderFilling
) -> None:
    ledger = Ledger(
        SPECS,
        SimAccount(),
        ExecutionSettings(filling_mode=filling_mode),
        Book(login=1, currency="USD", hedging=True, balance=Decimal(1)),
    )
    want = {
        OrderFilling.FOK: bool(filling_mode & c.SYMBOL_FILLING_FOK),
        OrderFilling.IOC: bool(filling_mode & c.SYMBOL_FILLING_IOC),
        OrderFilling.BOC: bool(filling_mode & c.SYMBOL_FILLING_BOC) and kind in _LIMIT_LIKE,
        OrderFilling.RETURN: kind in _LIMIT_LIKE,
    }[filling]
    request = _request(type=kind, filling=filling)
    if want:
        Requests(ledger)._filling(request)
    else:
        with pytest.raises(Refused) as refused:
            Requests(ledger)._filling(request)
        assert refused.value.retcode == c.TRADE_RETCODE_INVALID_FILL


@pytest.mark.parametrize("points", [1, 2, 3, 7, 10, 255, 1000])
def test_slippage_draws_are_randint_draws(points: int) -> None:
    ledger = _ledger([], hedging=True, commission="0")
    reference = random.Random(ledger.settings.seed)
    spec = SPECS["EURUSD"]
    ledger = Ledger(SPECS, ledger.account, ExecutionSettings(slippage_points=points), ledger.book)
    for n in range(300):
        side = (Side.BUY, Side.SELL)[n % 2]
        want = PRICE_SCALE + side.sign * reference.randint(0, points) * spec.point_raw
        assert ledger.slipped(PRICE_SCALE, side, spec) == want
    assert ledger.rng.getstate() == reference.getstate()
