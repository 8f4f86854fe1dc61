"""The decision engine: strategy intents and model probabilities in, signals and risk-checked orders out.

For every symbol it keeps each strategy's latest intent and combines them into a weighted score in
[-1, 1]: Σ weight × target × confidence / Σ weight (a model's probability counts as an intent with
target sign(2p − 1) and confidence |2p − 1|). The score becomes a direction (long, short, flat) when its
size reaches `threshold`; the regime filter may veto entries (never exits) while the market is outside the
configured volatility band. When the direction changes, a `Signal` carrying every contribution, the model
versions and the feature values goes out on `sig.<tenant>.<strategy>`, and the orders that move the
account's positions of this engine (`magic`) to the new direction go to the trading engine's `submit` —
its risk check decides, and a denial is counted, logged and reported, never raised.

The fields of an order that intents do not carry (the volume when they name none, deviation, filling,
magic) come from an `OrderDefaultsProvider`, asked once per signal: fixed values in backtests (the
default, `StaticOrderDefaults` with `DecisionConfig.magic`), the tenant's `trading` config in the live
service (`ConfiguredOrderDefaults`, see `aitrading.decision.defaults`).

The engine talks to the trading engine through two callables (submit, positions) so that it does not
import the trading engine's modules; the kernel or the backtester wires them.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

import msgspec
import structlog

from aitrading.common.bus import Bus
from aitrading.common.clock import Clock
from aitrading.decision.defaults import OrderDefaults, OrderDefaultsProvider, StaticOrderDefaults
from aitrading.features.indicators import streaming
from aitrading.model.commands import OrderRequest
from aitrading.model.enums import OrderType, Side, TradeAction
from aitrading.model.ids import AccountId, ClientOrderId, StrategyId, TenantId, signal_subject, strategy_id
from aitrading.model.positions import Position
from aitrading.strategies.base import FLAT, LONG, SHORT, OrderIntent, Signal

__all__ = ["DecisionConfig", "DecisionEngine", "PositionsFn", "RegimeConfig", "RegimeFilter", "SubmitFn"]

_log = structlog.get_logger("decision")


class _Submitted(Protocol):
    @property
    def denied(self) -> bool: ...

    @property
    def reason(self) -> str: ...


SubmitFn = Callable[[OrderRequest, str], Awaitable[_Submitted]]
"""The trading engine's `submit(request, actor)`."""

PositionsFn = Callable[[str], Sequence[Position]]
"""The account's open positions in a symbol."""


class RegimeConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Volatility regime: the std of per-price log returns over `period` must lie in [min_vol, max_vol]."""

    period: int = 50
    min_vol: float = 0.0
    max_vol: float = math.inf


class RegimeFilter:
    """Classifies each symbol's market as `warmup`, `calm`, `normal` or `wild` from its price changes."""

    def __init__(self, config: RegimeConfig) -> None:
        self.config = config
        self._last: dict[str, float] = {}
        self._std: dict[str, streaming.BBANDS] = {}
        self._vol: dict[str, float] = {}

    def on_price(self, symbol: str, price: float) -> None:
        """Take the symbol's next price."""
        last = self._last.get(symbol)
        self._last[symbol] = price
        if last is None or last <= 0 or price <= 0:
            return
        bands = self._std.get(symbol)
        if bands is None:
            bands = self._std[symbol] = streaming.BBANDS(self.config.period, 1.0, 1.0)
        upper, middle, _ = bands.update(math.log(price / last))
        self._vol[symbol] = upper - middle

    def volatility(self, symbol: str) -> float:
        """The latest std of returns (NaN during warm-up)."""
        return self._vol.get(symbol, math.nan)

    def regime(self, symbol: str) -> str:
        """The symbol's regime name."""
        vol = self.volatility(symbol)
        if math.isnan(vol):
            return "warmup"
        if vol < self.config.min_vol:
            return "calm"
        if vol > self.config.max_vol:
            return "wild"
        return "normal"

    def allows_entry(self, symbol: str) -> bool:
        """Whether new positions may be opened (always during warm-up when no band is set)."""
        r = self.regime(symbol)
        if r == "warmup":
            return self.config.min_vol <= 0 and self.config.max_vol == math.inf
        return r == "normal"


class DecisionConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Who the signals are for and how intents are combined."""

    tenant: str
    account: str
    strategy: str = "ensemble"
    weights: dict[str, float] = msgspec.field(default_factory=dict)
    threshold: float = 0.0
    magic: int = 0
    """The magic of the default (static) order defaults; a provider passed to the engine decides instead."""
    regime: RegimeConfig | None = None
    recent: int = 1000
    """How many of the latest signals and orders `signals`/`orders` keep (for status and inspection)."""

    def __post_init__(self) -> None:
        strategy_id(self.strategy)
        if self.recent < 1:
            raise ValueError(f"recent must be >= 1, got {self.recent}")
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold must be within [0, 1], got {self.threshold}")
        bad = {k: w for k, w in self.weights.items() if not w >= 0}
        if bad:
            raise ValueError(f"weights must be >= 0: {bad}")


class DecisionEngine:
    """See the module docstring."""

    def __init__(
        self,
        config: DecisionConfig,
        bus: Bus,
        clock: Clock,
        submit: SubmitFn,
        positions: PositionsFn,
        new_id: Callable[[], ClientOrderId],
        defaults: OrderDefaultsProvider | None = None,
    ) -> None:
        self.config = config
        self.defaults: OrderDefaultsProvider = defaults or StaticOrderDefaults(
            OrderDefaults(magic=config.magic)
        )
        self._magics: set[int] = set()  # the magics of this engine's orders: its positions carry one
        self._bus = bus
        self._clock = clock
        self._submit = submit
        self._positions = positions
        self._new_id = new_id
        self._tenant = TenantId(config.tenant)
        self._account = AccountId(config.account)
        self._subject = signal_subject(config.tenant, config.strategy)
        self._strategy = StrategyId(config.strategy)
        self._actor = f"decision:{config.strategy}"  # who submits: the audit's actor of the orders
        self._views: dict[str, dict[str, OrderIntent]] = {}
        self._direction: dict[str, int] = {}
        self.regime = RegimeFilter(config.regime) if config.regime is not None else None
        # The latest only: a live service runs for months (the counters keep the totals).
        self.signals: deque[Signal] = deque(maxlen=config.recent)
        self.orders: deque[OrderRequest] = deque(maxlen=config.recent)
        self.counters: dict[str, int] = {"intents": 0, "signals": 0, "orders": 0, "denied": 0, "vetoed": 0}
        self.last_decide_ns = 0
        """How long the last `on_intents` took to decide (ensemble, threshold, regime), without submitting."""

    def direction(self, symbol: str) -> int:
        """The direction of the last signal for `symbol` (0 before any)."""
        return self._direction.get(symbol, FLAT)

    def on_price(self, symbol: str, price: float) -> None:
        """Feed the regime filter."""
        if self.regime is not None:
            self.regime.on_price(symbol, price)

    async def on_probability(
        self,
        symbol: str,
        model: str,
        version: str,
        p_up: float,
        volume: int,
        features: dict[str, float] | None = None,
    ) -> Signal | None:
        """Take a model's P(up) for `symbol` as the intent of `model`; return the signal it caused."""
        if not 0.0 <= p_up <= 1.0:
            raise ValueError(f"probability must be within [0, 1], got {p_up}")
        edge = 2.0 * p_up - 1.0
        target = LONG if edge > 0 else SHORT if edge < 0 else FLAT
        intent = OrderIntent(
            strategy=model,
            symbol=symbol,
            target=target,
            volume=volume,
            ts_ns=self._clock.now_ns(),
            confidence=min(1.0, abs(edge)),
            reason=f"P(up)={p_up:.4f}",
            features={**(features or {}), "p_up": p_up},
            model_versions={model: version},
        )
        signals = await self.on_intents((intent,))
        return signals[0] if signals else None

    async def on_intents(self, intents: Sequence[OrderIntent]) -> list[Signal]:
        """Take intents; publish and execute the signals whose direction changed; return them."""
        started = time.perf_counter_ns()
        touched: list[str] = []
        for intent in intents:
            self.counters["intents"] += 1
            self._views.setdefault(intent.symbol, {})[intent.strategy] = intent
            if intent.symbol not in touched:
                touched.append(intent.symbol)
        out: list[Signal] = []
        for symbol in touched:
            signal = self._combine(symbol)
            if signal is not None:
                out.append(signal)
        self.last_decide_ns = time.perf_counter_ns() - started
        return [await self._act(signal) for signal in out]

    def _combine(self, symbol: str) -> Signal | None:
        views = self._views[symbol]
        weights = self.config.weights
        total = score = 0.0
        contributions: dict[str, tuple[int, float, float]] = {}
        for sid, intent in views.items():
            w = weights.get(sid, 1.0)
            total += w
            score += w * intent.target * intent.confidence
            contributions[sid] = (intent.target, intent.confidence, w)
        score = score / total if total > 0 else 0.0
        direction = FLAT
        if score != 0.0 and abs(score) >= self.config.threshold:
            direction = LONG if score > 0 else SHORT
        regime = ""
        if self.regime is not None:
            regime = self.regime.regime(symbol)
            if (
                direction != FLAT
                and direction != self.direction(symbol)
                and not self.regime.allows_entry(symbol)
            ):
                self.counters["vetoed"] += 1
                direction = FLAT
        if direction == self.direction(symbol):
            return None
        agreeing = [i for i in views.values() if i.target == direction] or list(views.values())
        versions: dict[str, str] = {}
        features: dict[str, float] = {}
        for intent in views.values():
            versions.update(intent.model_versions)
            features.update({f"{intent.strategy}.{k}": v for k, v in intent.features.items()})
        return Signal(
            tenant=self.config.tenant,
            strategy=self.config.strategy,
            symbol=symbol,
            direction=direction,
            volume=max(i.volume for i in agreeing),
            score=score,
            ts_ns=self._clock.now_ns(),
            regime=regime,
            contributions=contributions,
            model_versions=versions,
            features=features,
        )

    async def _act(self, signal: Signal) -> Signal:
        defaults = await self.defaults.get(self.config.tenant)
        if signal.volume <= 0 and signal.direction != FLAT:  # no intent named a volume: the default's
            signal = msgspec.structs.replace(signal, volume=defaults.volume)
        # The direction is the signal's, whatever the engine answers: one attempt per change of direction.
        # Trying again while orders of the last attempt may still be working (a close not yet filled) could
        # send a second close, which a netting account takes as a new opposite position.
        self._direction[signal.symbol] = signal.direction
        self.signals.append(signal)
        self.counters["signals"] += 1
        await self._bus.publish(self._subject, signal)
        self._magics.add(defaults.magic)
        held = [p for p in self._positions(signal.symbol) if p.magic in self._magics]
        for pos in held:
            if int(pos.type.sign) != signal.direction:
                kind = OrderType.SELL if pos.type is Side.BUY else OrderType.BUY
                await self._send(signal, kind, pos.volume, pos.ticket, defaults, pos.magic)
        if signal.direction != FLAT and not any(int(p.type.sign) == signal.direction for p in held):
            kind = OrderType.BUY if signal.direction == LONG else OrderType.SELL
            await self._send(signal, kind, signal.volume, 0, defaults, defaults.magic)
        return signal

    async def _send(
        self,
        signal: Signal,
        kind: OrderType,
        volume: int,
        position: int,
        defaults: OrderDefaults,
        magic: int,
    ) -> None:
        cid = self._new_id()
        req = OrderRequest(
            client_order_id=cid,
            tenant=self._tenant,
            account=self._account,
            ts_ns=self._clock.now_ns(),
            symbol=signal.symbol,
            action=TradeAction.DEAL,
            type=kind,
            volume=volume,
            deviation=defaults.deviation,
            filling=defaults.filling,
            magic=magic,
            comment=cid,
            strategy=self._strategy,
            position=position,
        )
        self.orders.append(req)
        self.counters["orders"] += 1
        result = await self._submit(req, self._actor)
        if result.denied:
            self.counters["denied"] += 1
            _log.warning("signal_denied", symbol=signal.symbol, reason=result.reason, order=cid)

    def status(self) -> dict[str, Any]:
        """Counters, the current direction per symbol and where the order defaults come from."""
        return {
            "counters": dict(self.counters),
            "directions": dict(self._direction),
            "order_defaults": self.defaults.status(),
        }
