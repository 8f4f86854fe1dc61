"""The simulated account and the execution settings of the simulated broker."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

from aitrading.common.errors import ConfigError
from aitrading.model.enums import MarginMode
from aitrading.mt5 import constants as c

if TYPE_CHECKING:
    from aitrading.common.config import SimulatorConfig

__all__ = ["ExecutionSettings", "SimAccount"]


class SimAccount(msgspec.Struct, frozen=True, kw_only=True):
    """The simulated trading account: who it is, its currency, leverage, accounting and starting money.

    `balance` and `credit` are where a fresh account starts; once the broker keeps books (in memory or in
    a state file) they move with every deal. `margin_so_call` and `margin_so_so` are margin levels in %:
    at or below the first the account is in margin call, at or below the second positions are stopped out.
    """

    login: int = 10_000_001
    name: str = "Simulated account"
    company: str = "aitrading simulated broker"
    currency: str = "USD"
    currency_digits: int = 2
    balance: Decimal = Decimal(10_000)
    credit: Decimal = Decimal(0)
    leverage: int = 100
    margin_mode: int = c.ACCOUNT_MARGIN_MODE_RETAIL_HEDGING
    trade_mode: int = c.ACCOUNT_TRADE_MODE_DEMO
    limit_orders: int = 200
    margin_so_call: Decimal = Decimal(50)
    margin_so_so: Decimal = Decimal(30)

    def __post_init__(self) -> None:
        if self.leverage <= 0:
            raise ConfigError(f"leverage must be positive, got {self.leverage}")
        if self.margin_mode not in (
            c.ACCOUNT_MARGIN_MODE_RETAIL_NETTING,
            c.ACCOUNT_MARGIN_MODE_RETAIL_HEDGING,
        ):
            raise ConfigError(f"the simulated account is netting (0) or hedging (2), not {self.margin_mode}")

    @property
    def mode(self) -> MarginMode:
        """The account's position accounting as a model enum."""
        return MarginMode(self.margin_mode)

    @classmethod
    def from_config(cls, sim: SimulatorConfig) -> SimAccount:
        """Return the account `simulator.*` configures."""
        return cls(
            currency=sim.currency,
            balance=sim.balance,
            leverage=sim.leverage,
            margin_mode=(
                c.ACCOUNT_MARGIN_MODE_RETAIL_HEDGING if sim.hedging else c.ACCOUNT_MARGIN_MODE_RETAIL_NETTING
            ),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecutionSettings:
    """How the simulated trade server executes.

    - `slippage_points`: market fills (and triggered stop orders) slip against the trader by a seeded
      random 0..N points; limit orders never slip.
    - `requote_probability`: chance that a market request is requoted although the price is within its
      deviation (seeded); a request whose fill would be more than `deviation` points worse than its
      `price` is always requoted.
    - `commission_per_lot`: account-currency commission per lot per side, booked on every deal.
    - `always_open`: trade around the clock; False refuses requests outside the FX week (`market_hours`).
    - `filling_mode`: `SYMBOL_FILLING_*` bits the symbols allow (FOK and IOC, like most ECN brokers).
    - `seed`: seeds the slippage and requote draws, so a run is reproducible.
    - `state_path`: keep the books in this file and restore them at start (None: in memory only).
    """

    slippage_points: int = 0
    requote_probability: float = 0.0
    commission_per_lot: Decimal = Decimal(0)
    always_open: bool = False
    filling_mode: int = c.SYMBOL_FILLING_FOK | c.SYMBOL_FILLING_IOC
    seed: int = 0
    state_path: Path | None = None

    def __post_init__(self) -> None:
        if self.slippage_points < 0:
            raise ConfigError(f"slippage_points must be >= 0, got {self.slippage_points}")
        if not 0.0 <= self.requote_probability <= 1.0:
            raise ConfigError(f"requote_probability must be within [0, 1], got {self.requote_probability}")
        if self.commission_per_lot < 0:
            raise ConfigError(f"commission_per_lot must be >= 0, got {self.commission_per_lot}")

    @classmethod
    def from_config(cls, sim: SimulatorConfig) -> ExecutionSettings:
        """Return the execution settings `simulator.*` configures."""
        return cls(
            slippage_points=sim.slippage_points,
            requote_probability=sim.requote_probability,
            commission_per_lot=sim.commission_per_lot,
            always_open=sim.always_open,
            seed=sim.seed,
            state_path=sim.state_path,
        )
