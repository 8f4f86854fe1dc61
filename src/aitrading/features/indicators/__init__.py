"""Technical indicators with TA-Lib's names, parameters, defaults and conventions, in two forms.

- `batch`: functions over whole numpy series (`batch.RSI(close, timeperiod=14)`), NaN during the lookback.
- `streaming`: one class per indicator (`streaming.RSI(timeperiod=14)`) whose `update(...)` takes one bar
  in O(1) and returns the current value, NaN during the lookback; `value` and `ready` report the state.

`INDICATORS` lists them all by TA-Lib name. Both forms run the same step functions, so a stream fed a
series reproduces the batch result value for value. Conventions and the NaN policy are in
docs/adr/0013-indicators.md.
"""

from __future__ import annotations

from aitrading.features.indicators import batch, streaming
from aitrading.features.indicators._kernels import MAType
from aitrading.features.indicators.registry import INDICATORS, IndicatorSpec

__all__ = ["INDICATORS", "IndicatorSpec", "MAType", "batch", "streaming"]
