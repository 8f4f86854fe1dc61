"""Properties of the simulated broker over random scripts of ticks, opens and closes (Hypothesis).

- The account: equity == balance + credit + floating P&L after every step, the floating P&L being each
  position's profit computed independently with `calc_profit` at its exit price (plus swap), and the
  balance the starting one plus every deal's profit, commission and swap.
- Netting: at most one position per symbol, its signed volume the sum of the signed deal volumes.
- Hedging: the open positions are exactly the IN deals not yet closed, each with what is left of its volume.
- A round trip's closed P&L equals `calc_profit` for the same prices (cross-currency USDJPY included).
- A pending order fills on the first tick that meets its trigger, never before.
"""

from __future__ import annotations

from decimal import Decimal

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from mt5_trading_helpers import LOT, T0, at, broker, request, tick

from aitrading.model.enums import DealEntry, OrderType, TradeAction
from aitrading.model.values import price_decimal
from aitrading.mt5.sim import SimBroker

_SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
_START = {"EURUSD": 108_500, "USDJPY": 150_000}  # in points: 1.08500, 150.000
_DIGITS = {"EURUSD": 5, "USDJPY": 3}

symbols = st.sampled_from(["EURUSD", "USDJPY"])
moves = st.integers(min_value=-300, max_value=300)
volumes = st.integers(min_value=1, max_value=300).map(lambda n: n * LOT // 100)
steps = st.one_of(
    st.tuples(st.just("tick"), symbols, moves, st.integers(min_value=1, max_value=30)),
    st.tuples(st.just("open"), symbols, st.sampled_from([OrderType.BUY, OrderType.SELL]), volumes),
    st.tuples(st.just("close"), st.integers(min_value=0, max_value=9), st.integers(min_value=1, max_value=4)),
)


def _text(points: int, symbol: str) -> str:
    return str(price_decimal(points * 10 ** (9 - _DIGITS[symbol])))


class _Script:
    def __init__(self, b: SimBroker) -> None:
        self.b = b
        self.mid = dict(_START)
        self.ms = T0
        for symbol in self.mid:
            self.quote(symbol, 0, 10)

    def quote(self, symbol: str, move: int, spread: int) -> None:
        self.ms += 1
        self.mid[symbol] += move
        bid = self.mid[symbol]
        self.b.on_tick(tick(symbol, _text(bid, symbol), _text(bid + spread, symbol), self.ms))

    def run(self, step: tuple[object, ...]) -> None:
        self.ms += 1
        if step[0] == "tick":
            _, symbol, move, spread = step
            self.quote(symbol, move, spread)  # type: ignore[arg-type]
        elif step[0] == "open":
            _, symbol, kind, volume = step
            self.b.order_send(request(symbol=symbol, type=kind, volume=volume), at(self.ms))  # type: ignore[arg-type]
        else:
            _, index, quarters = step
            positions = self.b.positions
            if not positions:
                return
            p = positions[index % len(positions)]  # type: ignore[operator]
            volume = max(LOT // 100, p.volume * quarters // 4 // (LOT // 100) * (LOT // 100))  # type: ignore[operator]
            kind = OrderType.SELL if p.type == 0 else OrderType.BUY
            self.b.order_send(
                request(symbol=p.symbol, type=kind, volume=volume, position=p.ticket), at(self.ms)
            )


def _check_account(b: SimBroker) -> None:
    state = b.state
    floating = Decimal(0)
    for p in b.positions:
        q = b.quote(p.symbol)
        assert q is not None
        exit_price = p.type.exit_price(q.bid, q.ask)
        if p.volume * p.price_open_raw == p.cost_raw:  # one open price (netting adds average it)
            expected = b.calc_profit(
                OrderType(p.type.value), p.symbol, p.volume, p.price_open_raw, exit_price
            )
            assert p.profit == expected
        floating += p.profit + p.swap
    assert state.profit == floating
    assert state.equity == state.balance + state.credit + floating
    assert state.margin_free == state.equity - state.margin
    assert state.balance == Decimal("1000000") + sum((d.balance_change for d in b.deals), Decimal(0))


@_SETTINGS
@given(script=st.lists(steps, min_size=1, max_size=40))
def test_hedging_positions_are_the_open_in_deals_and_equity_adds_up(script: list[tuple[object, ...]]) -> None:
    b = broker("EURUSD", "USDJPY", balance="1000000", commission_per_lot=Decimal("2.5"))
    runner = _Script(b)
    for step in script:
        runner.run(step)
        _check_account(b)
        remaining: dict[int, int] = {}
        for d in b.deals:
            sign = 1 if d.entry is DealEntry.IN else -1
            remaining[d.position_id] = remaining.get(d.position_id, 0) + sign * d.volume
        assert {p.identifier: p.volume for p in b.positions} == {k: v for k, v in remaining.items() if v}


@_SETTINGS
@given(script=st.lists(steps, min_size=1, max_size=40))
def test_netting_keeps_one_position_per_symbol_with_the_net_deal_volume(
    script: list[tuple[object, ...]],
) -> None:
    b = broker("EURUSD", "USDJPY", hedging=False, balance="1000000")
    runner = _Script(b)
    for step in script:
        runner.run(step)
        _check_account(b)
        net: dict[str, int] = {}
        for d in b.deals:
            net[d.symbol] = net.get(d.symbol, 0) + d.volume * d.side.sign
        by_symbol = [p.symbol for p in b.positions]
        assert len(by_symbol) == len(set(by_symbol))
        assert {p.symbol: p.signed_volume for p in b.positions} == {s: v for s, v in net.items() if v}


@_SETTINGS
@given(
    symbol=symbols,
    kind=st.sampled_from([OrderType.BUY, OrderType.SELL]),
    volume=volumes,
    move=moves,
    spread=st.integers(min_value=1, max_value=40),
)
def test_a_round_trip_books_exactly_order_calc_profit(
    symbol: str, kind: OrderType, volume: int, move: int, spread: int
) -> None:
    b = broker("EURUSD", "USDJPY", balance="1000000")
    runner = _Script(b)
    runner.quote(symbol, 0, spread)
    opened = b.order_send(request(symbol=symbol, type=kind, volume=volume), at(runner.ms + 1))
    runner.ms += 1
    runner.quote(symbol, move, spread)
    back = OrderType.SELL if kind is OrderType.BUY else OrderType.BUY
    closed = b.order_send(
        request(symbol=symbol, type=back, volume=volume, position=opened.order), at(runner.ms + 1)
    )
    assert closed.retcode == 10009
    assert b.deals[-1].profit == b.calc_profit(kind, symbol, volume, opened.price, closed.price)
    assert b.state.balance == Decimal("1000000") + b.deals[-1].profit


_TRIGGERS = {
    OrderType.BUY_LIMIT: lambda bid, ask, price: ask <= price,
    OrderType.SELL_LIMIT: lambda bid, ask, price: bid >= price,
    OrderType.BUY_STOP: lambda bid, ask, price: ask >= price,
    OrderType.SELL_STOP: lambda bid, ask, price: bid <= price,
}


@_SETTINGS
@given(
    kind=st.sampled_from(list(_TRIGGERS)),
    distance=st.integers(min_value=15, max_value=80),
    path=st.lists(st.integers(min_value=-15, max_value=15), min_size=1, max_size=40),
)
@example(kind=OrderType.BUY_LIMIT, distance=20, path=[-30])  # the ask lands exactly on the limit
@example(kind=OrderType.SELL_STOP, distance=20, path=[-19, -1])  # the bid lands exactly on the stop
def test_a_pending_order_fills_on_the_first_tick_that_meets_its_trigger(
    kind: OrderType, distance: int, path: list[int]
) -> None:
    b = broker(balance="1000000")
    runner = _Script(b)  # EURUSD bid 1.08500, ask 1.08510
    below = kind in (OrderType.BUY_LIMIT, OrderType.SELL_STOP)
    level = _START["EURUSD"] + (-distance if below else 10 + distance)
    price = level * 10**4
    answer = b.order_send(request(TradeAction.PENDING, type=kind, price=price), at(runner.ms + 1))
    assert answer.retcode == 10009
    expected_fill = None
    for move in path:
        runner.quote("EURUSD", move, 10)
        q = b.quote("EURUSD")
        assert q is not None
        if expected_fill is None and _TRIGGERS[kind](q.bid, q.ask, price):
            expected_fill = (q.time_msc, kind.side.entry_price(q.bid, q.ask))
        filled = [(d.time_msc, d.price) for d in b.deals]
        assert filled == ([] if expected_fill is None else [expected_fill])
