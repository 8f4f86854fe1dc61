"""Decision signals in the audit chain: before the orders they caused, refused for another tenant."""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

from engine_helpers import Rig, make_rig
from hypothesis import given, settings
from hypothesis import strategies as st

from aitrading.engine.core import plain
from aitrading.engine.signals import SIGNAL_EVENT, SignalAudit, signal_payload
from aitrading.storage.audit.chain import canonical_json
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


def _payload_by_plain(msg: Signal) -> dict[str, Any]:
    """The audit payload as first written: `plain(msg)`, then the three fields made canonical."""
    payload = plain(msg)
    payload["features"] = {k: v if math.isfinite(v) else None for k, v in msg.features.items()}
    payload["score"] = msg.score if math.isfinite(msg.score) else None
    payload["contributions"] = {
        k: [t, c if math.isfinite(c) else None, w if math.isfinite(w) else None]
        for k, (t, c, w) in msg.contributions.items()
    }
    return payload


class _SubSignal(Signal, frozen=True):
    extra: str = "x"


class _Text(str):
    pass


_odd = st.sampled_from([True, Decimal("1.5"), _Text("t"), 3.0, None])


@settings(max_examples=300, deadline=None)
@given(
    scalars=st.fixed_dictionaries(
        {
            "tenant": st.text() | _odd,
            "strategy": st.text() | _odd,
            "symbol": st.text(),
            "direction": st.integers(-1, 1) | _odd,
            "volume": st.integers() | _odd,
            "ts_ns": st.integers(min_value=0) | _odd,
            "regime": st.text() | _odd,
        }
    ),
    score=st.floats(),
    contributions=st.dictionaries(
        st.text(), st.tuples(st.integers(-1, 1), st.floats(), st.floats()), max_size=3
    ),
    versions=st.dictionaries(st.text(), st.text() | _odd, max_size=3),
    features=st.dictionaries(st.text(), st.floats(), max_size=4),
    sub=st.booleans(),
)
def test_signal_payload_is_plain_with_canonical_floats(
    scalars: dict[str, Any],
    score: float,
    contributions: dict[str, tuple[int, float, float]],
    versions: dict[str, Any],
    features: dict[str, float],
    sub: bool,
) -> None:
    kind = _SubSignal if sub else Signal
    msg = kind(
        **scalars, score=score, contributions=contributions, model_versions=versions, features=features
    )
    got, want = signal_payload(msg), _payload_by_plain(msg)
    assert got == want
    assert [type(v) for v in got.values()] == [type(v) for v in want.values()]
    try:
        want_text: Any = canonical_json(want)
    except (TypeError, ValueError) as exc:
        want_text = type(exc)
    try:
        got_text: Any = canonical_json(got)
    except (TypeError, ValueError) as exc:
        got_text = type(exc)
    assert got_text == want_text


def test_signal_payload_writes_out_exactly_the_fields_a_signal_has() -> None:
    """A field added to `Signal` must not be dropped from the audit: the field-by-field path turns off."""
    from aitrading.engine import signals

    assert signals._FIELD_BY_FIELD  # today's fields are all written out
    assert frozenset(Signal.__struct_fields__) == signals._WRITTEN_OUT
