"""Decision signals in the audit chain: what a trade was decided on, next to the orders it caused.

The decision engine publishes each change of direction as a `Signal` on `sig.<tenant>.<strategy>`, with
the weighted contributions of its strategies, the model versions and the feature values behind it, and
then submits the orders. `SignalAudit` appends each signal to its tenant's hash-chained audit as a
`decision.signal` event (actor `decision:<strategy>`): the orders it caused carry the same strategy and
follow it in time (`ts_ns`). The decision engine publishes a signal before it submits its orders, and with
the in-memory audit of a backtest the signal's event stands before theirs in the chain; with the
database audit (a slow append) or NATS nothing orders the two deliveries, so read them by strategy and
time, not by position in the chain.

It runs beside the trading engine, which holds the audit log, in every mode: the service in process or
split (the signals come over the bus), and the backtester (its in-memory audit). A signal is refused,
and counted, when its subject names another tenant than its body (a publisher must not write into
another tenant's chain) or when the engine keeps no account of that tenant.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Final

import structlog

from aitrading.common.bus import Bus, Subscription
from aitrading.common.bus.codec import Message
from aitrading.common.errors import BadInputError
from aitrading.engine.core import plain
from aitrading.engine.ports import AuditTrail
from aitrading.strategies import Signal

__all__ = ["SIGNAL_EVENT", "SignalAudit", "signal_payload"]

SIGNAL_EVENT = "decision.signal"

_log = structlog.get_logger("engine.signals")


class SignalAudit:
    """Appends every decision signal to its tenant's audit chain; see the module docstring."""

    def __init__(self, bus: Bus, audit: AuditTrail, has_tenant: Callable[[str], bool]) -> None:
        self._bus = bus
        self._audit = audit
        self._has_tenant = has_tenant
        self._sub: Subscription | None = None
        self.counters: dict[str, int] = {"audited": 0, "foreign": 0, "unknown_tenant": 0, "unencodable": 0}

    async def start(self) -> None:
        """Subscribe to every tenant's signals."""
        self._sub = await self._bus.subscribe("sig.*.*", self._on_message)

    async def stop(self) -> None:
        """Unsubscribe."""
        if self._sub is not None:
            await self._sub.unsubscribe()
            self._sub = None

    async def _on_message(self, subject: str, msg: Message) -> None:
        if not isinstance(msg, Signal):
            return
        tenant = subject.split(".")[1]
        if msg.tenant != tenant or msg.strategy != subject.split(".", 2)[2]:
            self.counters["foreign"] += 1
            _log.warning("signal_subject_mismatch", subject=subject, tenant=msg.tenant, strategy=msg.strategy)
            return
        if not self._has_tenant(tenant):
            self.counters["unknown_tenant"] += 1
            return
        payload = signal_payload(msg)
        try:
            await self._audit.append(tenant, f"decision:{msg.strategy}", SIGNAL_EVENT, payload)
        except BadInputError as exc:  # anything else canonical JSON refuses: say so, carry on
            self.counters["unencodable"] += 1
            _log.error("signal_not_audited", subject=subject, error=str(exc)[:300])
            return
        self.counters["audited"] += 1


_SCALARS: Final = frozenset({str, int})
_WRITTEN_OUT: Final = frozenset(
    {"tenant", "strategy", "symbol", "direction", "volume", "score", "ts_ns", "regime", "contributions"}
    | {"model_versions", "features"}
)
_FIELD_BY_FIELD: Final = frozenset(Signal.__struct_fields__) == _WRITTEN_OUT
"""Whether `signal_payload` may write a signal field by field: a field added to `Signal` turns it off
(the payload then comes from `plain`, which writes every field) until it is written out too."""


def signal_payload(msg: Signal) -> dict[str, Any]:
    """The audit payload of a signal: `plain(msg)` with the features, the score and the contributions
    written canonically (JSON has no NaN or infinity: an undefined value is written as null).

    A `Signal` (not a subclass) whose scalar fields are exact str and int is built field by field — what
    `plain` returns for it, without converting the three fields replaced anyway (a test pins the two)."""
    tenant, strategy, symbol, regime = msg.tenant, msg.strategy, msg.symbol, msg.regime
    direction, volume, ts_ns = msg.direction, msg.volume, msg.ts_ns
    payload: dict[str, Any]
    if (
        _FIELD_BY_FIELD
        and type(msg) is Signal
        and set(map(type, (tenant, strategy, symbol, regime, direction, volume, ts_ns))) <= _SCALARS
    ):
        payload = {
            "tenant": tenant,
            "strategy": strategy,
            "symbol": symbol,
            "direction": direction,
            "volume": volume,
            "score": None,
            "ts_ns": ts_ns,
            "regime": regime,
            "contributions": None,
            "model_versions": plain(msg.model_versions),
            "features": None,
        }
    else:
        payload = plain(msg)
    payload["features"] = {k: _finite(v) for k, v in msg.features.items()}
    payload["score"] = _finite(msg.score)
    payload["contributions"] = {
        k: [target, _finite(confidence), _finite(weight)]
        for k, (target, confidence, weight) in msg.contributions.items()
    }
    return payload


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None
