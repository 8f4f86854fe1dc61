"""The backtester: replayed quotes through the live components — strategies → decision engine → trading
engine (risk check, books, audit) → simulated venue (`SimBroker`) — on the in-process bus and a test clock.

Nothing here decides or books anything itself: it builds the same objects the platform runs live (the
trading engine — with its persistence ports in memory, `engine.memory`, the audit still hash-chained —
the decision engine, the simulated broker behind an agent-like venue), moves the clock to each quote's
time and hands the quote to them in the live order: trading engine, venue (which executes the commands
that were waiting for a quote), strategies, decision engine.
A command made at a bar's close therefore fills at the next bar's open, as it would live.

Two drivers over the same objects: `run_ticks`/`run_bars` call the components directly (fast), while
`run_paper` publishes each quote on `md.tick.<feed>.<symbol>` and lets the components take it from their
bus subscriptions, as in paper trading. Both produce the same orders for the same quotes (a test shows it).
"""

from __future__ import annotations

import random
import uuid
from array import array
from collections.abc import AsyncIterable, Callable, Iterable, Sequence
from decimal import Decimal
from time import perf_counter_ns
from typing import Any, Final, Literal

import msgspec

from aitrading.backtest.data import bar_quotes
from aitrading.backtest.venue import SimVenue
from aitrading.common.bus.codec import Message
from aitrading.common.bus.memory import MemoryBus
from aitrading.common.clock import TestClock
from aitrading.common.errors import BadInputError
from aitrading.decision.engine import DecisionConfig, DecisionEngine, RegimeConfig
from aitrading.engine.engine import TradingEngine
from aitrading.engine.memory import MemoryAudit, MemoryStore, MemoryWriter
from aitrading.engine.signals import SignalAudit
from aitrading.model.deals import Deal
from aitrading.model.ids import AccountId, ClientOrderIdGenerator, TenantId, tick_subject
from aitrading.model.market import Bar, Tick, Timeframe
from aitrading.model.positions import Position
from aitrading.model.values import PRICE_SCALE
from aitrading.mt5 import constants as c
from aitrading.mt5.sim.account import ExecutionSettings, SimAccount
from aitrading.mt5.sim.broker import SimBroker
from aitrading.mt5.specs import DEFAULT_SPECS
from aitrading.strategies.base import OrderIntent, Strategy
from aitrading.strategies.loader import SafeStrategy

__all__ = ["Backtest", "BacktestConfig", "Costs", "EquityPoint"]

_TENANT = TenantId(str(uuid.uuid5(uuid.NAMESPACE_URL, "aitrading:backtest")))
"""The tenant of every backtest (its books live only in the run's memory)."""

Progress = Callable[[int], None]

_TWO_SCALES: Final = 2 * PRICE_SCALE
"""A tick's mid price is (bid + ask) / _TWO_SCALES."""


class Costs(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Trading costs: spread and slippage in points, commission per lot per side, swaps (points per lot
    per night; None keeps the symbol's)."""

    spread_points: int = 0
    slippage_points: int = 0
    commission_per_lot: Decimal = Decimal(0)
    swap_long: Decimal | None = Decimal(0)
    swap_short: Decimal | None = Decimal(0)

    def __post_init__(self) -> None:
        if self.spread_points < 0 or self.slippage_points < 0 or self.commission_per_lot < 0:
            raise BadInputError("spread, slippage and commission must be >= 0")


class BacktestConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One run: the symbol, the account, the costs, how intents combine, how bars become quotes."""

    symbol: str
    feed: str = "BT"
    account: str = "1"
    balance: Decimal = Decimal(1_000_000)
    leverage: int = 100
    hedging: bool = True
    costs: Costs = Costs()
    ohlc: bool = False
    threshold: float = 0.0
    weights: dict[str, float] = msgspec.field(default_factory=dict)
    regime: RegimeConfig | None = None
    max_failures: int = 3
    close_at_end: bool = True
    end_at: Literal["close", "open"] = "close"
    """Where a bar backtest ends: at the last bar's close (its quotes and `on_bar` included), or when the
    last bar opens — its open quote fills what waits, `close_at_end` closes at that quote, and the bar is
    not shown to the strategies. `open` is what backtesting.py's `finalize_trades` does."""
    equity_every_s: int = 60
    seed: int = 1


class EquityPoint(msgspec.Struct, frozen=True, array_like=True):
    """Equity (account money) at a time (epoch ns) and whether a position was open."""

    ts_ns: int
    equity: Decimal
    exposed: bool


class _Context:
    def __init__(self, clock: TestClock, decision: DecisionEngine) -> None:
        self._clock, self._decision = clock, decision

    def now_ns(self) -> int:
        return self._clock.now_ns()

    def position(self, symbol: str) -> int:
        return self._decision.direction(symbol)


class Backtest:
    """One backtest run; `async with Backtest(...) as bt: await bt.run_bars(bars)`."""

    def __init__(self, config: BacktestConfig, strategies: Sequence[Strategy[Any]]):
        if config.symbol not in DEFAULT_SPECS:
            known = ", ".join(sorted(DEFAULT_SPECS))
            raise BadInputError(f"unknown symbol {config.symbol!r}; the simulated broker trades {known}")
        if not strategies:
            raise BadInputError("a backtest needs at least one strategy")
        self.config = config
        spec = DEFAULT_SPECS[config.symbol]
        costs = config.costs
        spec = msgspec.structs.replace(
            spec,
            swap_long=spec.swap_long if costs.swap_long is None else costs.swap_long,
            swap_short=spec.swap_short if costs.swap_short is None else costs.swap_short,
        )
        self.specs = {**DEFAULT_SPECS, config.symbol: spec}
        self.spread_raw = costs.spread_points * spec.point_raw
        self.strategies = [SafeStrategy(s, max_failures=config.max_failures) for s in strategies]
        self._raw = list(strategies)
        self.clock = TestClock(0)
        self.bus = MemoryBus(streams=())
        self.equity: list[EquityPoint] = []
        self.latency_ns = array("q")
        self.events = 0
        self._next_equity_ns = 0
        self.orders_seen: list[Message] = []

    # --- lifecycle -------------------------------------------------------------------------------------
    async def __aenter__(self) -> Backtest:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Build and start the components: engine (persistence in memory), venue, decision engine."""
        cfg = self.config
        self.tenant = _TENANT
        await self.bus.connect()
        self.store, self.audit = MemoryStore(), MemoryAudit(self.clock)
        self.engine = TradingEngine(
            self.bus,
            self.store,
            self.audit,
            self.clock,
            self.specs,
            writer=MemoryWriter(self.store, self.audit),
        )
        await self.engine.start()
        self.signals = SignalAudit(self.bus, self.audit, lambda tenant: tenant == self.tenant)
        await self.signals.start()
        account = AccountId(cfg.account)
        self.broker = SimBroker(
            self.specs,
            account=SimAccount(
                balance=cfg.balance,
                leverage=cfg.leverage,
                margin_mode=c.ACCOUNT_MARGIN_MODE_RETAIL_HEDGING
                if cfg.hedging
                else c.ACCOUNT_MARGIN_MODE_RETAIL_NETTING,
            ),
            settings=ExecutionSettings(
                slippage_points=cfg.costs.slippage_points,
                commission_per_lot=cfg.costs.commission_per_lot,
                always_open=True,
                seed=cfg.seed,
            ),
        )
        self.venue = SimVenue(
            self.bus, self.broker, self.clock, tenant=self.tenant, account=account, feed=cfg.feed
        )
        await self.venue.start()
        rng = random.Random(cfg.seed)
        self.decision = DecisionEngine(
            DecisionConfig(
                tenant=self.tenant,
                account=cfg.account,
                strategy=self._raw[0].id if len(self._raw) == 1 else "ensemble",
                weights=cfg.weights,
                threshold=cfg.threshold,
                regime=cfg.regime,
            ),
            self.bus,
            self.clock,
            self.engine.submit,
            self._positions,
            ClientOrderIdGenerator(self.clock, prefix="BT", random_bytes=rng.randbytes),
        )
        self.ctx = _Context(self.clock, self.decision)

        async def record(subject: str, msg: Message) -> None:
            self.orders_seen.append(msg)

        await self.bus.subscribe(f"ord.cmd.{self.tenant}.*", record)
        for wrapped in self.strategies:
            wrapped.on_start(self.ctx)

    async def stop(self) -> None:
        """Stop the components."""
        await self.venue.stop()
        await self.signals.stop()
        await self.engine.stop()
        await self.bus.close()

    def _positions(self, symbol: str) -> list[Position]:
        book = self.engine.book(self.tenant, self.config.account)
        return [] if book is None else [p for p in book.positions.values() if p.symbol == symbol]

    # --- drivers -------------------------------------------------------------------------------------
    def _move_clock(self, tick: Tick) -> None:
        ns = tick.time_msc * 1_000_000
        if ns > self.clock.now_ns():
            self.clock.set_ns(ns)

    async def _market(self, tick: Tick) -> None:
        """The trading engine and the venue take the quote (live order: engine, then the agent's fill)."""
        self._move_clock(tick)
        await self.engine.on_tick(tick)
        await self.venue.on_tick(tick)

    async def _decide(self, intents: list[OrderIntent], symbol: str, price: float, hooks: int) -> None:
        """Hand the price and the intents to the decision engine; record the decision latency (`hooks`, the
        strategy hooks' time, + the ensemble's; not the trading engine's submit, which `bench engine`
        measures)."""
        self.decision.on_price(symbol, price)
        if intents:
            await self._intents(intents, hooks)
        else:
            self.latency_ns.append(hooks)

    async def _intents(self, intents: list[OrderIntent], hooks: int) -> None:
        decision = self.decision
        signals = await decision.on_intents(intents)
        decide = decision.last_decide_ns
        for signal in signals:
            more: list[OrderIntent] = []
            for s in self.strategies:
                more += s.on_signal(signal, self.ctx)
            if more:
                await decision.on_intents(more)
        self.latency_ns.append(hooks + decide)

    async def _strategies_tick(self, tick: Tick) -> None:
        started = perf_counter_ns()
        intents: list[OrderIntent] = []
        for s in self.strategies:
            intents += s.on_tick(tick, self.ctx)
        hooks = perf_counter_ns() - started
        await self._decide(intents, tick.symbol, (tick.bid + tick.ask) / _TWO_SCALES, hooks)

    def _sample(self, force: bool = False) -> None:
        now = self.clock.now_ns()
        if not force and now < self._next_equity_ns:
            return
        self._next_equity_ns = now + self.config.equity_every_s * 1_000_000_000
        broker = self.broker
        self.equity.append(EquityPoint(now, broker.equity, broker.has_positions))

    async def run_ticks(
        self, ticks: Iterable[Tick] | AsyncIterable[Tick], progress: Progress | None = None
    ) -> None:
        """Replay quotes; strategies see every tick (`on_tick`)."""
        if isinstance(ticks, AsyncIterable):
            async for tick in ticks:
                await self._tick(tick, progress)
        else:  # no async generator between the quotes and the components: it costs per quote
            step = self._tick
            for tick in ticks:
                await step(tick, progress)
        await self._finish()

    async def _tick(self, tick: Tick, progress: Progress | None) -> None:
        """One quote: `_market`, `_strategies_tick`, `_count` and `_sample` in one frame (it runs for every
        quote; `run_paper` goes through those methods and gives the same orders, a test shows it)."""
        clock = self.clock
        ns = tick.time_msc * 1_000_000
        if ns > clock.now_ns():
            clock.set_ns(ns)
        await self.engine.on_tick(tick)
        await self.venue.on_tick(tick)
        started = perf_counter_ns()
        ctx = self.ctx
        intents: list[OrderIntent] = []
        for s in self.strategies:
            intents += s.on_tick(tick, ctx)
        hooks = perf_counter_ns() - started
        self.decision.on_price(tick.symbol, (tick.bid + tick.ask) / _TWO_SCALES)  # `_decide`, inline
        if intents:
            await self._intents(intents, hooks)
        else:
            self.latency_ns.append(hooks)
        self.events = events = self.events + 1
        if progress is not None and events % 1000 == 0:
            progress(events)
        if clock.now_ns() >= self._next_equity_ns:
            self._sample()

    async def run_bars(self, bars: Iterable[Bar], progress: Progress | None = None) -> None:
        """Replay bars as quotes (see `data.bar_quotes`); strategies see each closed bar (`on_bar`)."""
        spread, ohlc = self.spread_raw, self.config.ohlc
        clock, ctx, strategies = self.clock, self.ctx, self.strategies
        engine_tick, venue_tick = self.engine.on_tick, self.venue.on_tick
        broker, equity, every_ns = self.broker, self.equity, self.config.equity_every_s * 1_000_000_000
        seconds_of: dict[int, int] = {}
        remaining = iter(bars)
        following = next(remaining, None)
        while following is not None:
            bar, following = following, next(remaining, None)
            seconds = seconds_of.get(bar.timeframe)
            if seconds is None:
                seconds = seconds_of[bar.timeframe] = Timeframe(bar.timeframe).seconds
            quotes = bar_quotes(bar, seconds, spread, ohlc=ohlc)
            if following is None and self.config.end_at == "open":
                await self._market(quotes[0])  # the run ends as the last bar opens
                self._count(progress)
                break
            for tick in quotes:  # `_market`, inline: it runs for every quote
                ns = tick.time_msc * 1_000_000
                if ns > clock.now_ns():
                    clock.set_ns(ns)
                await engine_tick(tick)
                await venue_tick(tick)
            started = perf_counter_ns()
            intents: list[OrderIntent] = []
            for s in strategies:
                intents += s.on_bar(bar, ctx)
            hooks = perf_counter_ns() - started
            await self._decide(intents, bar.symbol, bar.close / PRICE_SCALE, hooks)
            self.events = events = self.events + 1  # `_count` and `_sample(force=True)`, inline
            if progress is not None and events % 1000 == 0:
                progress(events)
            now = clock.now_ns()
            self._next_equity_ns = now + every_ns
            equity.append(EquityPoint(now, broker.equity, broker.has_positions))
        await self._finish()

    async def run_paper(self, ticks: Iterable[Tick], progress: Progress | None = None) -> None:
        """Publish each quote on the bus and let the components take it from their subscriptions."""
        await self.venue.subscribe_ticks([self.config.symbol])

        async def on_tick(subject: str, msg: Message) -> None:
            if isinstance(msg, Tick):
                await self._strategies_tick(msg)

        await self.bus.subscribe(tick_subject(self.config.feed, self.config.symbol), on_tick)
        for tick in ticks:
            self._move_clock(tick)
            await self.bus.publish(tick_subject(tick.feed, tick.symbol), tick)
            self._count(progress)
            self._sample()
        await self._finish()

    def _count(self, progress: Progress | None) -> None:
        self.events += 1
        if progress is not None and self.events % 1000 == 0:
            progress(self.events)

    async def _finish(self) -> None:
        if self.config.close_at_end:
            flat = [
                OrderIntent(
                    strategy=s.id,
                    symbol=self.config.symbol,
                    target=0,
                    volume=1,
                    ts_ns=self.clock.now_ns(),
                    reason="end of backtest",
                )
                for s in self.strategies
            ]
            await self.decision.on_intents(flat)
            await self.venue.flush()
        self._sample(force=True)

    # --- results -------------------------------------------------------------------------------------
    def deals(self) -> list[Deal]:
        """The trade deals the trading engine booked, in time order."""
        book = self.engine.book(self.tenant, self.config.account)
        deals = [] if book is None else [d for d in book.deals.values() if d.is_trade]
        return sorted(deals, key=lambda d: (d.time_ns, d.ticket))

    def positions(self) -> list[Position]:
        """Positions still open (none after `close_at_end`)."""
        return self._positions(self.config.symbol)
