"""One table of the indicators: TA-Lib name, inputs, outputs, batch function and streaming class.

The feature service builds feature vectors by name from it; the tests and the benchmark walk it so every
indicator is checked and measured the same way.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from aitrading.features.indicators import batch, streaming

__all__ = ["INDICATORS", "IndicatorSpec"]

_REAL = ("real",)
_HLC = ("high", "low", "close")


@dataclass(frozen=True, slots=True)
class IndicatorSpec:
    """How to call one indicator in both forms."""

    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    batch: Callable[..., Any]
    stream: Callable[..., Any]

    @property
    def defaults(self) -> dict[str, Any]:
        """Parameter names and default values, in TA-Lib's order (read from the batch signature)."""
        return {
            name: param.default
            for name, param in inspect.signature(self.batch).parameters.items()
            if name not in self.inputs
        }


def _spec(name: str, inputs: tuple[str, ...], outputs: tuple[str, ...] = _REAL) -> IndicatorSpec:
    return IndicatorSpec(name, inputs, outputs, getattr(batch, name), getattr(streaming, name))


INDICATORS: Mapping[str, IndicatorSpec] = MappingProxyType(
    {
        spec.name: spec
        for spec in (
            _spec("SMA", _REAL),
            _spec("EMA", _REAL),
            _spec("WMA", _REAL),
            _spec("MA", _REAL),
            _spec("RSI", _REAL),
            _spec("MACD", _REAL, ("macd", "macdsignal", "macdhist")),
            _spec("BBANDS", _REAL, ("upperband", "middleband", "lowerband")),
            _spec("TRANGE", _HLC),
            _spec("ATR", _HLC),
            _spec("PLUS_DI", _HLC),
            _spec("MINUS_DI", _HLC),
            _spec("DX", _HLC),
            _spec("ADX", _HLC),
            _spec("STOCH", _HLC, ("slowk", "slowd")),
        )
    }
)
