"""Symbol specifications with MT5's essentials."""

from __future__ import annotations

from decimal import Decimal

import msgspec

from aitrading.model.values import PRICE_DECIMALS, VOLUME_SCALE

__all__ = ["SymbolSpec"]


class SymbolSpec(msgspec.Struct, frozen=True, kw_only=True):
    """What MT5's `symbol_info` says about a symbol that matters to pricing, sizing and risk.

    Volumes are raw integers of 1e-8 lots; `stops_level` and `freeze_level` are in points.
    """

    name: str
    description: str = ""
    digits: int
    contract_size: Decimal
    volume_min: int = VOLUME_SCALE // 100
    volume_max: int = 100 * VOLUME_SCALE
    volume_step: int = VOLUME_SCALE // 100
    stops_level: int = 0
    freeze_level: int = 0
    currency_base: str
    currency_profit: str
    currency_margin: str
    trade_calc_mode: int = 0
    swap_long: Decimal = Decimal(0)
    swap_short: Decimal = Decimal(0)
    typical_spread: int = 10
    path: str = ""

    @property
    def point_raw(self) -> int:
        """One point as a raw price (1e-9 units)."""
        return int(10 ** (PRICE_DECIMALS - self.digits))

    @property
    def point(self) -> Decimal:
        """One point as a decimal price, e.g. 0.00001 for a 5-digit symbol."""
        return Decimal(1).scaleb(-self.digits)

    def volume_ok(self, raw_volume: int) -> bool:
        """Tell whether a raw volume is within min/max and on the step grid."""
        return (
            self.volume_min <= raw_volume <= self.volume_max
            and (raw_volume - self.volume_min) % self.volume_step == 0
        )
