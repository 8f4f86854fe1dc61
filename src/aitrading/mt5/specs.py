"""Default symbol specifications and synthetic-feed profiles of the simulated terminal.

The specifications are what a typical retail ECN-style broker shows in `symbol_info` (2024-era values):
5-digit FX majors (3 digits for JPY quotes), 100,000-unit lots, gold in 100-ounce lots at 2 digits. Swaps are
in points per lot per night (`SYMBOL_SWAP_MODE_POINTS`), the sign showing who pays the carry. The profiles
give the synthetic feed a realistic start price, annualised volatility and tick rate per symbol.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from types import MappingProxyType

import msgspec

from aitrading.model.symbols import SymbolSpec
from aitrading.model.values import VOLUME_SCALE
from aitrading.mt5 import constants as c

__all__ = [
    "DEFAULT_PROFILES",
    "DEFAULT_SPECS",
    "FX_MAJORS",
    "JPY_CROSSES",
    "SyntheticProfile",
    "default_specs",
]

FX_MAJORS = ("EURUSD", "GBPUSD", "USDJPY", "USDCHF", "AUDUSD", "USDCAD", "NZDUSD")
JPY_CROSSES = ("EURJPY", "GBPJPY", "AUDJPY")

_LOT = VOLUME_SCALE
_CENT_LOT = VOLUME_SCALE // 100

_CURRENCY_NAMES = {
    "EUR": "Euro",
    "GBP": "Great Britain Pound",
    "USD": "US Dollar",
    "JPY": "Japanese Yen",
    "CHF": "Swiss Franc",
    "AUD": "Australian Dollar",
    "CAD": "Canadian Dollar",
    "NZD": "New Zealand Dollar",
}


class SyntheticProfile(msgspec.Struct, frozen=True, kw_only=True):
    """How the synthetic feed moves one symbol.

    `start_price` is where the walk begins, `annual_vol` the annualised volatility of the geometric random
    walk (0.07 = 7 %), `tick_rate` the mean ticks per second in the London session (other sessions scale it).
    """

    start_price: Decimal
    annual_vol: float
    tick_rate: float = 1.0


def _fx(
    name: str,
    *,
    spread: int,
    swap_long: str,
    swap_short: str,
    stops_level: int = 10,
) -> SymbolSpec:
    base, quote = name[:3], name[3:]
    return SymbolSpec(
        name=name,
        description=f"{_CURRENCY_NAMES[base]} vs {_CURRENCY_NAMES[quote]}",
        digits=3 if quote == "JPY" else 5,
        contract_size=Decimal(100_000),
        volume_min=_CENT_LOT,
        volume_max=100 * _LOT,
        volume_step=_CENT_LOT,
        stops_level=stops_level,
        freeze_level=0,
        currency_base=base,
        currency_profit=quote,
        currency_margin=base,
        trade_calc_mode=c.SYMBOL_CALC_MODE_FOREX,
        swap_long=Decimal(swap_long),
        swap_short=Decimal(swap_short),
        typical_spread=spread,
        path=f"Forex\\{'Majors' if name in FX_MAJORS else 'Crosses'}\\{name}",
    )


_ALL = (
    _fx("EURUSD", spread=10, swap_long="-7.2", swap_short="2.4"),
    _fx("GBPUSD", spread=14, swap_long="-3.6", swap_short="-0.9"),
    _fx("USDJPY", spread=12, swap_long="14.8", swap_short="-31.5"),
    _fx("USDCHF", spread=15, swap_long="6.1", swap_short="-12.4"),
    _fx("AUDUSD", spread=12, swap_long="-4.3", swap_short="0.6"),
    _fx("USDCAD", spread=16, swap_long="1.7", swap_short="-6.8"),
    _fx("NZDUSD", spread=18, swap_long="-2.6", swap_short="-1.1"),
    _fx("EURJPY", spread=18, swap_long="9.7", swap_short="-24.9", stops_level=20),
    _fx("GBPJPY", spread=28, swap_long="17.9", swap_short="-35.2", stops_level=20),
    _fx("AUDJPY", spread=20, swap_long="8.1", swap_short="-19.6", stops_level=20),
    SymbolSpec(
        name="XAUUSD",
        description="Gold vs US Dollar",
        digits=2,
        contract_size=Decimal(100),
        volume_min=_CENT_LOT,
        volume_max=50 * _LOT,
        volume_step=_CENT_LOT,
        stops_level=50,
        freeze_level=0,
        currency_base="XAU",
        currency_profit="USD",
        currency_margin="USD",
        trade_calc_mode=c.SYMBOL_CALC_MODE_CFDLEVERAGE,
        swap_long=Decimal("-46.5"),
        swap_short=Decimal("24.8"),
        typical_spread=25,
        path="Metals\\XAUUSD",
    ),
)

DEFAULT_SPECS: Mapping[str, SymbolSpec] = MappingProxyType({spec.name: spec for spec in _ALL})
"""The simulated terminal's symbols by name: FX majors, JPY crosses and gold."""

DEFAULT_PROFILES: Mapping[str, SyntheticProfile] = MappingProxyType(
    {
        "EURUSD": SyntheticProfile(start_price=Decimal("1.08500"), annual_vol=0.070, tick_rate=1.6),
        "GBPUSD": SyntheticProfile(start_price=Decimal("1.27000"), annual_vol=0.080, tick_rate=1.3),
        "USDJPY": SyntheticProfile(start_price=Decimal("150.000"), annual_vol=0.100, tick_rate=1.4),
        "USDCHF": SyntheticProfile(start_price=Decimal("0.88000"), annual_vol=0.075, tick_rate=0.9),
        "AUDUSD": SyntheticProfile(start_price=Decimal("0.66000"), annual_vol=0.100, tick_rate=1.0),
        "USDCAD": SyntheticProfile(start_price=Decimal("1.36000"), annual_vol=0.060, tick_rate=0.9),
        "NZDUSD": SyntheticProfile(start_price=Decimal("0.61000"), annual_vol=0.105, tick_rate=0.7),
        "EURJPY": SyntheticProfile(start_price=Decimal("162.700"), annual_vol=0.095, tick_rate=1.1),
        "GBPJPY": SyntheticProfile(start_price=Decimal("190.500"), annual_vol=0.110, tick_rate=1.2),
        "AUDJPY": SyntheticProfile(start_price=Decimal("99.000"), annual_vol=0.130, tick_rate=0.9),
        "XAUUSD": SyntheticProfile(start_price=Decimal("2350.00"), annual_vol=0.150, tick_rate=2.0),
    }
)
"""Start price, volatility and tick rate of each default symbol for `SyntheticTickSource`."""


def default_specs(*names: str) -> dict[str, SymbolSpec]:
    """Return the default specifications of `names` (all of them when none are given).

    Raise `KeyError` naming the known symbols when a name is not one of them.
    """
    if not names:
        return dict(DEFAULT_SPECS)
    unknown = [name for name in names if name not in DEFAULT_SPECS]
    if unknown:
        raise KeyError(f"no default spec for {', '.join(unknown)}; known: {', '.join(DEFAULT_SPECS)}")
    return {name: DEFAULT_SPECS[name] for name in names}
