"""Built-in strategies on the streaming indicators: moving-average cross, RSI mean reversion, Bollinger
breakout.

Each works on bars (`on_bar`, the close) and on ticks (`on_tick`, the mid price), so the same class runs a
bar backtest and a tick backtest. A strategy emits an intent only when the position it wants changes.
Prices go into the indicators as floats: indicators are statistics, not money; orders stay exact.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any, Final, Literal

from aitrading.features.indicators import streaming
from aitrading.model.market import Bar, Tick
from aitrading.model.values import PRICE_SCALE
from aitrading.strategies.base import FLAT, LONG, SHORT, Intents, Strategy, StrategyConfig, StrategyContext

__all__ = [
    "BollingerBreakout",
    "BollingerConfig",
    "MACross",
    "MACrossConfig",
    "RSIConfig",
    "RSIReversion",
    "mid_price",
]


_TWO_SCALES: Final = 2 * PRICE_SCALE


def mid_price(tick: Tick) -> float:
    """The tick's mid price as a float."""
    return (tick.bid + tick.ask) / _TWO_SCALES


class _PriceStrategy(Strategy[Any], ABC):
    """One price per event (a bar's close, a tick's mid) of the configured symbol into `_decide`."""

    def __init__(self, config: Any, *, strategy_id: str = "") -> None:
        super().__init__(config, strategy_id=strategy_id)
        self._target = FLAT

    def on_bar(self, bar: Bar, ctx: StrategyContext, **kwargs: Any) -> Intents:
        symbol, wanted = bar.symbol, self.config.symbol
        if wanted and symbol != wanted:
            return None
        return self._decide(symbol, bar.close / PRICE_SCALE, ctx)

    def on_tick(self, tick: Tick, ctx: StrategyContext, **kwargs: Any) -> Intents:
        symbol, wanted = tick.symbol, self.config.symbol
        if wanted and symbol != wanted:
            return None
        return self._decide(symbol, (tick.bid + tick.ask) / _TWO_SCALES, ctx)  # `mid_price`, inline

    @abstractmethod
    def _decide(self, symbol: str, price: float, ctx: StrategyContext) -> Intents:
        """The intents after this price: one when the wanted position changes, else None."""


class _IndicatorStrategy(_PriceStrategy):
    """Asks `_on_price` for the wanted target and turns a changed target into an intent."""

    def _decide(self, symbol: str, price: float, ctx: StrategyContext) -> Intents:
        target = self._on_price(price)
        if target is None or target == self._target:
            return None
        self._target = target
        return (self.intent(symbol, target, ctx, reason=self._why(target), features=self._features(price)),)

    @abstractmethod
    def _on_price(self, price: float) -> int | None:
        """Return the wanted target after this price, or None to keep the current one."""

    def _why(self, target: int) -> str:
        return {LONG: "long", SHORT: "short", FLAT: "flat"}[target]

    def _features(self, price: float) -> dict[str, float]:
        return {"price": price}


class MACrossConfig(StrategyConfig, frozen=True, kw_only=True):
    """`fast`/`slow` periods of a simple (`sma`) or exponential (`ema`) moving average."""

    fast: int = 10
    slow: int = 20
    ma: Literal["sma", "ema"] = "sma"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 2 <= self.fast < self.slow:
            raise ValueError(f"need 2 <= fast < slow, got fast={self.fast} slow={self.slow}")


class MACross(_IndicatorStrategy):
    """Long when the fast average crosses above the slow one, short when it crosses below (always in).

    A cross is backtesting.py's `crossover`: fast < slow on the previous price and fast > slow on this one.
    """

    name = "ma_cross"
    config_type = MACrossConfig

    def __init__(self, config: MACrossConfig, *, strategy_id: str = "") -> None:
        super().__init__(config, strategy_id=strategy_id)
        kind = streaming.SMA if config.ma == "sma" else streaming.EMA
        self._fast, self._slow = kind(config.fast), kind(config.slow)
        self._prev = (math.nan, math.nan)
        self._last = (math.nan, math.nan)

    def _on_price(self, price: float) -> int | None:
        fast, slow = self._fast.update(price), self._slow.update(price)
        pf, ps = self._prev = self._last
        self._last = (fast, slow)
        if pf < ps and fast > slow:  # NaN compares False: no cross during the lookback
            return LONG
        if pf > ps and fast < slow:
            return SHORT
        return None

    def _features(self, price: float) -> dict[str, float]:
        return {"price": price, "ma_fast": self._last[0], "ma_slow": self._last[1]}


class RSIConfig(StrategyConfig, frozen=True, kw_only=True):
    """Wilder RSI of `period`; enter below `lower` / above `upper`, leave when it crosses `exit`."""

    period: int = 14
    lower: float = 30.0
    upper: float = 70.0
    exit: float = 50.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 < self.lower < self.exit < self.upper < 100:
            raise ValueError("need 0 < lower < exit < upper < 100")


class RSIReversion(_IndicatorStrategy):
    """Mean reversion: long when oversold, short when overbought, flat when RSI gets back to `exit`."""

    name = "rsi_reversion"
    config_type = RSIConfig

    def __init__(self, config: RSIConfig, *, strategy_id: str = "") -> None:
        super().__init__(config, strategy_id=strategy_id)
        self._rsi = streaming.RSI(config.period)

    def _on_price(self, price: float) -> int | None:
        rsi = self._rsi.update(price)
        c = self.config
        if math.isnan(rsi):
            return None
        if rsi < c.lower:
            return LONG
        if rsi > c.upper:
            return SHORT
        if (self._target == LONG and rsi >= c.exit) or (self._target == SHORT and rsi <= c.exit):
            return FLAT
        return None

    def _features(self, price: float) -> dict[str, float]:
        return {"price": price, "rsi": self._rsi.value}


class BollingerConfig(StrategyConfig, frozen=True, kw_only=True):
    """Bands of `period` and `nbdev` standard deviations."""

    period: int = 20
    nbdev: float = 2.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.period < 2 or self.nbdev <= 0:
            raise ValueError("need period >= 2 and nbdev > 0")


class BollingerBreakout(_IndicatorStrategy):
    """Breakout: long on a close above the upper band, short below the lower, flat back at the middle."""

    name = "bollinger_breakout"
    config_type = BollingerConfig

    def __init__(self, config: BollingerConfig, *, strategy_id: str = "") -> None:
        super().__init__(config, strategy_id=strategy_id)
        self._bands = streaming.BBANDS(config.period, config.nbdev, config.nbdev)

    def _on_price(self, price: float) -> int | None:
        upper, middle, lower = self._bands.update(price)
        if math.isnan(middle):
            return None
        if price > upper:
            return LONG
        if price < lower:
            return SHORT
        if (self._target == LONG and price <= middle) or (self._target == SHORT and price >= middle):
            return FLAT
        return None

    def _features(self, price: float) -> dict[str, float]:
        upper, middle, lower = self._bands.value
        return {"price": price, "bb_upper": upper, "bb_middle": middle, "bb_lower": lower}
