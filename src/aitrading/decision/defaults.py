"""Order defaults of the decision engine: fixed for backtests, the tenant's `trading` config when live.

The engine fills the MT5 request fields an intent does not carry from an `OrderDefaultsProvider`: the
volume when an intent names none (0), the deviation in points, the filling mode and the magic number.
`StaticOrderDefaults` answers fixed values (the backtester, tests, a service without a config service);
`ConfiguredOrderDefaults` reads the tenant's `trading` namespace through the config service's
`ConfigClient`, whose cache the `cfg.changed.<tenant>` announcements invalidate, so a change made through
the config API reaches the next order.

Config is not allowed to stop trading decisions: when the config service cannot answer, the provider
serves the tenant's last known defaults (else its fallback), counts and logs the failure, and does not ask
again for `retry_after_s` so that an outage does not add a timeout to every order.
"""

from __future__ import annotations

from typing import Any, Protocol

import msgspec
import structlog
from pydantic import BaseModel

from aitrading.common.clock import NS_PER_S, Clock
from aitrading.config_service.namespaces import TradingConfig
from aitrading.model.enums import OrderFilling
from aitrading.model.values import volume_raw

__all__ = [
    "BACKTEST_DEVIATION",
    "ConfiguredOrderDefaults",
    "OrderDefaults",
    "OrderDefaultsProvider",
    "StaticOrderDefaults",
    "TradingConfigSource",
]

_log = structlog.get_logger("decision")

BACKTEST_DEVIATION = 20
"""The deviation (points) the engine has always sent without a config: backtests keep it."""


class OrderDefaults(msgspec.Struct, frozen=True, kw_only=True):
    """Fields of a new order that intents do not carry. `volume` is raw (1e-8 lots), 0 meaning none."""

    volume: int = 0
    deviation: int = BACKTEST_DEVIATION
    filling: OrderFilling = OrderFilling.FOK
    magic: int = 0

    def __post_init__(self) -> None:
        if self.volume < 0 or self.deviation < 0 or self.magic < 0:
            raise ValueError(f"order defaults must not be negative: {self}")

    @classmethod
    def from_trading(cls, config: TradingConfig) -> OrderDefaults:
        """Return the defaults a tenant's `trading` namespace sets."""
        return cls(
            volume=volume_raw(config.default_volume_lots),
            deviation=config.default_deviation_points,
            filling=OrderFilling[config.default_filling],
            magic=config.default_magic,
        )


class OrderDefaultsProvider(Protocol):
    """Where the engine gets the defaults of a tenant's next orders; `get` never raises."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def get(self, tenant: str) -> OrderDefaults: ...

    def status(self) -> dict[str, Any]: ...


class StaticOrderDefaults:
    """The same defaults for every tenant and every order."""

    def __init__(self, defaults: OrderDefaults | None = None) -> None:
        self.defaults = defaults or OrderDefaults()

    async def start(self) -> None:
        """Nothing to follow."""

    async def stop(self) -> None:
        """Nothing to release."""

    async def get(self, tenant: str) -> OrderDefaults:
        """Return the fixed defaults."""
        return self.defaults

    def status(self) -> dict[str, Any]:
        """Say where the defaults come from."""
        return {"source": "static", "defaults": msgspec.to_builtins(self.defaults)}


class TradingConfigSource(Protocol):
    """What `ConfiguredOrderDefaults` needs of `aitrading.config_service.client.ConfigClient`."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def namespace(self, tenant: str | None, name: str, user: str | None = None) -> BaseModel: ...


class ConfiguredOrderDefaults:
    """The tenant's `trading` config through a `ConfigClient`; last known (else `fallback`) on failure.

    The provider owns the client: `start` follows its change announcements, `stop` closes it.
    """

    def __init__(
        self,
        client: TradingConfigSource,
        clock: Clock,
        *,
        fallback: OrderDefaults | None = None,
        retry_after_s: float = 5.0,
    ) -> None:
        if retry_after_s < 0:
            raise ValueError("retry_after_s must not be negative")
        self.client = client
        self._clock = clock
        self.fallback = fallback or OrderDefaults.from_trading(TradingConfig())
        self._retry_ns = int(retry_after_s * NS_PER_S)
        self._last: dict[str, OrderDefaults] = {}
        self._quiet_until: dict[str, int] = {}
        self.reads = 0
        self.failures = 0
        """Reads the config service did not answer (each logged)."""
        self.fallbacks = 0
        """Orders given last known or fallback defaults instead of fresh ones."""
        self.last_error = ""

    async def start(self) -> None:
        """Follow the config change announcements."""
        await self.client.start()

    async def stop(self) -> None:
        """Stop following them and close the client."""
        await self.client.stop()

    async def get(self, tenant: str) -> OrderDefaults:
        """Return the tenant's defaults now; never raises."""
        if self._clock.now_ns() < self._quiet_until.get(tenant, 0):
            return self._stale(tenant)
        self.reads += 1
        try:
            config = await self.client.namespace(tenant, "trading")
            if not isinstance(config, TradingConfig):
                raise TypeError(f"the trading namespace read as {type(config).__name__}")
            defaults = OrderDefaults.from_trading(config)
        except Exception as exc:  # any failure of a config read must not stop trading decisions
            self.failures += 1
            self.last_error = f"{type(exc).__name__}: {exc}"[:300]
            self._quiet_until[tenant] = self._clock.now_ns() + self._retry_ns
            _log.warning(
                "order_defaults_unavailable",
                tenant=tenant,
                error=self.last_error,
                using="last_known" if tenant in self._last else "fallback",
                retry_after_s=self._retry_ns / NS_PER_S,
            )
            return self._stale(tenant)
        self._last[tenant] = defaults
        self._quiet_until.pop(tenant, None)
        return defaults

    def _stale(self, tenant: str) -> OrderDefaults:
        self.fallbacks += 1
        return self._last.get(tenant, self.fallback)

    def status(self) -> dict[str, Any]:
        """Where the defaults come from, the last known per tenant, and the failures."""
        return {
            "source": "config",
            "reads": self.reads,
            "failures": self.failures,
            "fallbacks": self.fallbacks,
            "last_error": self.last_error,
            "fallback": msgspec.to_builtins(self.fallback),
            "last_known": {t: msgspec.to_builtins(d) for t, d in self._last.items()},
        }
