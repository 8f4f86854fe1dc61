"""Risk limits, configurable per tenant, per account and per strategy.

Every level that has limits applies: an order for strategy S on account A of tenant T must pass T's limits,
A's and S's. A limit left at None is not checked at that level. Volumes are raw (1e-8 lots), money is in
the account currency, percentages are plain numbers (5 means 5 %).
"""

from __future__ import annotations

import enum
from decimal import Decimal

import msgspec

__all__ = ["BreachAction", "RiskLimits", "RiskScope", "RiskState", "TradingWindow"]


class RiskState(enum.StrEnum):
    """What an account may still do: everything, only reduce its risk, or nothing new at all."""

    ACTIVE = "ACTIVE"
    REDUCING = "REDUCING"
    """Only orders that reduce or close positions, SL/TP changes and cancellations."""
    HALTED = "HALTED"
    """Only closing positions and cancelling pending orders."""


class RiskScope(enum.StrEnum):
    """The level a set of limits belongs to."""

    TENANT = "tenant"
    ACCOUNT = "account"
    STRATEGY = "strategy"


class BreachAction(enum.StrEnum):
    """The state an account moves to when a loss limit is breached."""

    REDUCE = "REDUCING"
    HALT = "HALTED"


class TradingWindow(msgspec.Struct, frozen=True, kw_only=True):
    """Hours in which new risk may be opened: `weekdays` (0 = Monday), [start, end) minutes of the UTC day."""

    weekdays: tuple[int, ...] = (0, 1, 2, 3, 4)
    start_minute: int = 0
    end_minute: int = 1440

    def __post_init__(self) -> None:
        if not 0 <= self.start_minute < self.end_minute <= 1440:
            raise ValueError("a trading window needs 0 <= start_minute < end_minute <= 1440")
        if not self.weekdays or any(not 0 <= d <= 6 for d in self.weekdays):
            raise ValueError("weekdays must be a non-empty list of 0 (Monday) .. 6 (Sunday)")

    def contains(self, weekday: int, minute: int) -> bool:
        """Tell whether the UTC `weekday` and `minute` of the day fall in the window."""
        return weekday in self.weekdays and self.start_minute <= minute < self.end_minute


class RiskLimits(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, forbid_unknown_fields=True):
    """One level's limits; see the module docstring."""

    max_volume_per_order: int | None = None
    """Raw volume (1e-8 lots) one order may carry."""
    max_position_volume: int | None = None
    """Raw net volume per symbol an account may hold after the order (both sides counted separately)."""
    max_gross_exposure: Decimal | None = None
    """Σ |notional| of open positions plus the order, in the account currency."""
    max_open_positions: int | None = None
    max_daily_loss: Decimal | None = None
    """Loss of equity since the start of the UTC day; on breach the account moves to `daily_loss_action`."""
    daily_loss_action: BreachAction = BreachAction.REDUCE
    max_drawdown_pct: Decimal | None = None
    """Fall of equity from its peak, in percent; on breach the account moves to `drawdown_action`."""
    drawdown_action: BreachAction = BreachAction.HALT
    max_orders_per_minute: int | None = None
    price_band_pct: Decimal | None = None
    """How far (percent) a limit/stop price or a market request's price may be from the last tick's mid."""
    trading_windows: tuple[TradingWindow, ...] | None = None
    """UTC windows in which risk-increasing orders are allowed; None means any time."""
    kill_switch: bool = False
    """Halts everything under this level at once (closing and cancelling still allowed)."""

    def __post_init__(self) -> None:
        for name in ("max_volume_per_order", "max_position_volume", "max_open_positions"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} must not be negative")
        if self.max_orders_per_minute is not None and self.max_orders_per_minute < 1:
            raise ValueError("max_orders_per_minute must be at least 1")
        for name in ("max_gross_exposure", "max_daily_loss", "max_drawdown_pct", "price_band_pct"):
            value = getattr(self, name)
            if value is not None and (not value.is_finite() or value < 0):
                raise ValueError(f"{name} must be a finite, non-negative number")
