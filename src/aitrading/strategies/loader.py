"""Finding strategies by name or import path, and running them inside a safe wrapper.

`load_strategy("ma_cross", {"fast": "10"})` builds a built-in; `load_strategy("my_pkg.strats:Breakout", …)`
imports a user's class (a `Strategy` subclass written for this interface version or an older one).

`SafeStrategy` runs any strategy's hooks so that its exceptions never reach the platform: each one is
logged with the strategy id, counted, kept as `last_error`, and after `max_failures` of them the strategy
is disabled (its hooks are no longer called) — a broken user strategy stops trading instead of stopping
the engine or spamming orders. What a hook returns is checked too: anything but `OrderIntent`s is a failure.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping
from typing import Any

import structlog

from aitrading.model.market import Bar, Tick
from aitrading.strategies.base import (
    INTERFACE_VERSION,
    OrderIntent,
    Signal,
    Strategy,
    StrategyContext,
)
from aitrading.strategies.builtin import BollingerBreakout, MACross, RSIReversion
from aitrading.strategies.ml import MLProbability

__all__ = ["BUILTIN", "SafeStrategy", "import_object", "load_strategy", "strategy_class"]

_log = structlog.get_logger("strategies")

BUILTIN: dict[str, type[Strategy[Any]]] = {
    cls.name: cls for cls in (MACross, RSIReversion, BollingerBreakout, MLProbability)
}
"""Built-in strategies by name (`sma_cross` and `ema_cross` are `ma_cross` with `ma` preset)."""

_ALIASES: dict[str, tuple[str, dict[str, str]]] = {
    "sma_cross": ("ma_cross", {"ma": "sma"}),
    "ema_cross": ("ma_cross", {"ma": "ema"}),
    "rsi": ("rsi_reversion", {}),
    "bollinger": ("bollinger_breakout", {}),
    "ml": ("ml_probability", {}),
}


def import_object(path: str) -> Any:
    """Import `package.module:attribute` (or `package.module.attribute`); raise `ValueError` if absent."""
    module_name, sep, attr = path.partition(":")
    if not sep:
        module_name, _, attr = path.rpartition(".")
    if not module_name or not attr:
        raise ValueError(f"{path!r} is not an import path like 'package.module:Name'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"cannot import {module_name!r}: {exc}") from None
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ValueError(f"module {module_name!r} has no {attr!r}") from None


def strategy_class(name: str) -> tuple[type[Strategy[Any]], dict[str, str]]:
    """Return the class called `name` (built-in, alias or import path) and the parameters it presets."""
    preset: dict[str, str] = {}
    if name in _ALIASES:
        name, preset = _ALIASES[name][0], dict(_ALIASES[name][1])
    cls = BUILTIN.get(name)
    if cls is None:
        if "." not in name and ":" not in name:
            known = ", ".join(sorted([*BUILTIN, *_ALIASES]))
            raise ValueError(f"unknown strategy {name!r}; built-ins: {known}; or give package.module:Class")
        cls = import_object(name)
        if not (isinstance(cls, type) and issubclass(cls, Strategy)):
            raise ValueError(f"{name!r} is not a Strategy subclass")
    version = getattr(cls, "INTERFACE_VERSION", None)
    if not isinstance(version, int) or not 1 <= version <= INTERFACE_VERSION:
        raise ValueError(
            f"strategy {name!r} targets interface version {version!r}; "
            f"this platform runs 1..{INTERFACE_VERSION}"
        )
    return cls, preset


def load_strategy(
    name: str, params: Mapping[str, Any] | None = None, *, strategy_id: str = ""
) -> Strategy[Any]:
    """Build strategy `name` with `params`; raise `ValueError` with the reason if it cannot be built."""
    cls, preset = strategy_class(name)
    merged = {**preset, **(params or {})}
    return cls.from_params(merged, strategy_id=strategy_id or name.replace(".", "_").replace(":", "_"))


class SafeStrategy:
    """Runs a strategy's hooks with its failures contained, counted, reported; disables it after N."""

    def __init__(self, strategy: Strategy[Any], *, max_failures: int = 3) -> None:
        if max_failures < 1:
            raise ValueError("max_failures must be >= 1")
        self.strategy = strategy
        self.id = strategy.id
        self.max_failures = max_failures
        self.failures = 0
        self.last_error = ""
        self.enabled = True

    def _run(self, hook: str, *args: Any) -> list[OrderIntent]:
        if not self.enabled:
            return []
        try:
            out = getattr(self.strategy, hook)(*args)
            return [] if out is None else self._intents(hook, out)
        except Exception as exc:  # user code: anything it raises is contained here
            return self._failed(hook, exc)

    def _intents(self, hook: str, out: Iterable[Any]) -> list[OrderIntent]:
        intents = list(out)
        for intent in intents:
            if not isinstance(intent, OrderIntent):
                raise TypeError(f"{hook} returned {type(intent).__name__}, not OrderIntent")
        return intents

    def _failed(self, hook: str, exc: Exception) -> list[OrderIntent]:
        self.failures += 1
        self.last_error = f"{hook}: {type(exc).__name__}: {exc}"
        _log.warning(
            "strategy_failed", strategy=self.id, hook=hook, error=self.last_error, failures=self.failures
        )
        if self.failures >= self.max_failures:
            self.enabled = False
            _log.error("strategy_disabled", strategy=self.id, failures=self.failures)
        return []

    def on_start(self, ctx: StrategyContext) -> None:
        """Run `on_start` (a failure counts like any other)."""
        self._run("on_start", ctx)

    def on_bar(self, bar: Bar, ctx: StrategyContext) -> list[OrderIntent]:
        """Run `on_bar`; return its intents (none if it failed or is disabled)."""
        if not self.enabled:  # `_run`, inline: this runs for every bar
            return []
        try:
            out = self.strategy.on_bar(bar, ctx)
            return [] if out is None else self._intents("on_bar", out)
        except Exception as exc:
            return self._failed("on_bar", exc)

    def on_tick(self, tick: Tick, ctx: StrategyContext) -> list[OrderIntent]:
        """Run `on_tick`; return its intents (none if it failed or is disabled)."""
        if not self.enabled:  # `_run`, inline: this runs for every tick
            return []
        try:
            out = self.strategy.on_tick(tick, ctx)
            return [] if out is None else self._intents("on_tick", out)
        except Exception as exc:
            return self._failed("on_tick", exc)

    def on_signal(self, signal: Signal, ctx: StrategyContext) -> list[OrderIntent]:
        """Run `on_signal`; return its intents (none if it failed or is disabled)."""
        return self._run("on_signal", signal, ctx)

    def status(self) -> dict[str, Any]:
        """What the strategy's wrapper has seen: id, enabled, failures, last error."""
        return {
            "strategy": self.id,
            "enabled": self.enabled,
            "failures": self.failures,
            "last_error": self.last_error,
        }
