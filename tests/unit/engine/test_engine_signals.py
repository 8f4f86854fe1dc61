"""Decision signals in the audit chain: before the orders they caused, refused for another tenant."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

from engine_helpers import Rig, make_rig

from aitrading.engine.signals import SIGNAL_EVENT, SignalAudit
from aitrading.strategies import LONG, Signal


def _signal(tenant: str, **kw: object) -> Signal:
    base: dict[str, object] = {
        "tenant": tenant,
        "strategy": "trend",
        "symbol": "EURUSD",
        "direction": LONG,
        "volume": 10_000_000,
        "score": 0.6,
        "ts_ns": 1,
        "contributions": {"sma": (1, 1.0, 1.0)},
        "model_versions": {"EURUSD-H1-lightgbm-h1": "3"},
        "features": {"rsi_14": 0.61},
    }
    base.update(kw)
    return Signal(**base)  # type: ignore[arg-type]


def _keeps(rig: Rig) -> Callable[[str], bool]:
    return lambda tenant: bool(rig.engine.accounts_of(tenant))


async def test_a_signal_lands_in_its_tenants_chain_and_a_foreign_one_nowhere(tmp_path: Path) -> None:
    async for rig in make_rig(tmp_path):
        audit = SignalAudit(rig.bus, rig.audit, _keeps(rig))
        await audit.start()
        await rig.bus.publish(f"sig.{rig.tenant}.trend", _signal(rig.tenant))
        other = str(uuid.uuid4())
        await rig.bus.publish(f"sig.{other}.trend", _signal(rig.tenant))  # body names another tenant
        await rig.bus.publish(f"sig.{other}.trend", _signal(other))  # a tenant this engine does not keep
        await rig.bus.publish(f"sig.{rig.tenant}.trend", _signal(rig.tenant, features={"x": float("nan")}))
        await rig.bus.publish(f"sig.{rig.tenant}.trend", _signal(rig.tenant, score=float("inf")))
        await audit.stop()
        assert audit.counters == {"audited": 3, "foreign": 1, "unknown_tenant": 1, "unencodable": 0}
        events = [r for r in await rig.audit.records(rig.tenant) if r.kind == SIGNAL_EVENT]
        assert len(events) == 3
        assert events[1].payload_dict()["features"] == {"x": None}  # undefined, written as null
        assert events[2].payload_dict()["score"] is None
        assert events[0].actor == "decision:trend"
        payload = events[0].payload_dict()
        assert payload["model_versions"] == {"EURUSD-H1-lightgbm-h1": "3"}
        assert payload["features"] == {"rsi_14": 0.61}
        assert (await rig.audit.verify(rig.tenant)).ok
