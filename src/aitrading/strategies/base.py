"""The strategy interface (version `INTERFACE_VERSION`): a frozen config plus a class with typed hooks.

A strategy sees market data through three hooks — `on_bar` (a closed bar), `on_tick` (a quote) and
`on_signal` (a signal another strategy or the decision engine published) — and answers with `OrderIntent`s:
the position it wants in a symbol (long, short or flat), how sure it is, and the features and model
versions behind that view. It never sends orders: the decision engine combines intents into signals and
the trading engine risk-checks them, so the same class runs in backtest, paper and live.

Hooks take `**kwargs` so the platform can pass more context later without breaking user strategies; a
strategy declares the interface version it was written for, and `loader` refuses a newer one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any, ClassVar, Generic, Protocol, TypeVar

import msgspec

from aitrading.common.bus.codec import Message
from aitrading.model.market import Bar, Tick
from aitrading.model.values import volume_raw

__all__ = [
    "FLAT",
    "INTERFACE_VERSION",
    "LONG",
    "SHORT",
    "Intents",
    "OrderIntent",
    "Signal",
    "Strategy",
    "StrategyConfig",
    "StrategyContext",
]

INTERFACE_VERSION = 1
"""Bumped when a hook's signature or meaning changes incompatibly."""

LONG, FLAT, SHORT = 1, 0, -1


class StrategyConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What every strategy is configured with; subclasses add their parameters (frozen, typed).

    `volume` is the position size in lots (exact); `symbol` the one symbol it trades ("" = any it sees).
    """

    symbol: str = ""
    volume: Decimal = Decimal(1)

    def __post_init__(self) -> None:
        if self.volume <= 0:
            raise ValueError(f"volume must be positive lots, got {self.volume}")

    @property
    def volume_raw(self) -> int:
        """`volume` as raw 1e-8 lots."""
        return volume_raw(self.volume)


class OrderIntent(Message, frozen=True):
    """The position a strategy wants in `symbol`: `target` LONG (1), FLAT (0) or SHORT (-1).

    `volume` is raw (1e-8 lots); `confidence` in [0, 1]; `features` and `model_versions` record what the
    view was built from, so the audit can explain the trade.
    """

    strategy: str
    symbol: str
    target: int
    volume: int
    ts_ns: int
    confidence: float = 1.0
    reason: str = ""
    features: dict[str, float] = msgspec.field(default_factory=dict)
    model_versions: dict[str, str] = msgspec.field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.target not in (LONG, FLAT, SHORT):
            raise ValueError(f"target must be 1, 0 or -1, got {self.target}")
        if not 0.0 <= self.confidence <= 1.0:
            raise ValueError(f"confidence must be within [0, 1], got {self.confidence}")


class Signal(Message, frozen=True):
    """The decision engine's verdict for one symbol, published on `sig.<tenant>.<strategy>`.

    `direction` is the position wanted (1, 0, -1); `score` the weighted ensemble in [-1, 1];
    `contributions` each strategy's (target, confidence, weight); `model_versions` and `features` are the
    union of what the contributing intents carried.
    """

    tenant: str
    strategy: str
    symbol: str
    direction: int
    volume: int
    score: float
    ts_ns: int
    regime: str = ""
    contributions: dict[str, tuple[int, float, float]] = msgspec.field(default_factory=dict)
    model_versions: dict[str, str] = msgspec.field(default_factory=dict)
    features: dict[str, float] = msgspec.field(default_factory=dict)


Intents = Iterable[OrderIntent] | None


class StrategyContext(Protocol):
    """What a strategy may ask of the platform while a hook runs."""

    def now_ns(self) -> int:
        """The current time (the injected clock's: replayed time in a backtest)."""
        ...

    def position(self, symbol: str) -> int:
        """The direction (1, 0, -1) of the position the platform holds for this strategy in `symbol`."""
        ...


C = TypeVar("C", bound=StrategyConfig)


class Strategy(Generic[C]):
    """Base of every strategy: override the hooks you need; each returns intents (or None)."""

    INTERFACE_VERSION: ClassVar[int] = INTERFACE_VERSION
    name: ClassVar[str] = "strategy"
    config_type: ClassVar[type[StrategyConfig]] = StrategyConfig

    def __init__(self, config: C, *, strategy_id: str = "") -> None:
        self.config = config
        self.id = strategy_id or self.name

    @classmethod
    def from_params(cls, params: Mapping[str, Any], *, strategy_id: str = "") -> Strategy[Any]:
        """Build the strategy from loose `k=v` parameters (strings are converted to the config's types)."""
        try:
            config: Any = msgspec.convert(dict(params), cls.config_type, strict=False)
        except (msgspec.ValidationError, ValueError) as exc:
            raise ValueError(f"bad parameters for strategy {cls.name!r}: {exc}") from None
        return cls(config, strategy_id=strategy_id)

    def on_start(self, ctx: StrategyContext, **kwargs: Any) -> None:
        """Called once before the first event."""

    def on_bar(self, bar: Bar, ctx: StrategyContext, **kwargs: Any) -> Intents:
        """A bar closed."""
        return None

    def on_tick(self, tick: Tick, ctx: StrategyContext, **kwargs: Any) -> Intents:
        """A quote arrived."""
        return None

    def on_signal(self, signal: Signal, ctx: StrategyContext, **kwargs: Any) -> Intents:
        """A signal was published."""
        return None

    def intent(
        self,
        symbol: str,
        target: int,
        ctx: StrategyContext,
        *,
        confidence: float = 1.0,
        reason: str = "",
        features: dict[str, float] | None = None,
        model_versions: dict[str, str] | None = None,
    ) -> OrderIntent:
        """Build an intent of this strategy at the context's time with the configured volume."""
        return OrderIntent(
            strategy=self.id,
            symbol=symbol,
            target=target,
            volume=self.config.volume_raw,
            ts_ns=ctx.now_ns(),
            confidence=confidence,
            reason=reason,
            features=features or {},
            model_versions=model_versions or {},
        )
