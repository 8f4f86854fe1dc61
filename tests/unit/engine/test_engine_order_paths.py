"""An order's quick paths through the engine against the exact ones they stand in for:

- `plain` of a struct by one `msgspec.to_builtins` call gives what the field-by-field walk gives (requests,
  deals, events with a tag, structs holding structs, renamed fields, omitted defaults, arrays, UNSET);
- `MemoryAudit` stamps the events of one test-clock instant with one timestamp object, and any other
  clock's events with their own;
- the engine's notional function, made once per account, values what a new one values.
"""

from __future__ import annotations

import itertools
import random
import uuid
from decimal import Decimal
from typing import Any

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from aitrading.common.clock import LiveClock, TestClock
from aitrading.engine.core import plain
from aitrading.engine.memory import MemoryAudit
from aitrading.model.commands import OrderRequest, TradeCommand
from aitrading.model.deals import Deal
from aitrading.model.enums import DealEntry, DealType, OrderFilling, OrderType, TradeAction
from aitrading.model.events import OrderFilled, OrderSubmitted

_AS_IS = frozenset({int, str, float, bool, type(None)})


def _plain_exact(value: object) -> Any:
    """`plain` as it was: field by field."""
    if isinstance(value, msgspec.Struct):
        out: dict[str, Any] = {}
        for f in value.__struct_fields__:
            v = getattr(value, f)
            kind = type(v)
            out[f] = v if kind in _AS_IS else str(v) if kind is Decimal else _plain_exact(v)
        return out
    return msgspec.to_builtins(value, enc_hook=str)


class _Inner(msgspec.Struct, tag=True):
    a: int = 1


class _Renamed(msgspec.Struct, rename="camel"):
    some_field: int = 1


class _Omits(msgspec.Struct, omit_defaults=True):
    a: int = 1
    b: str = ""


class _Array(msgspec.Struct, array_like=True):
    a: int = 1


class _Holder(msgspec.Struct):
    value: Any = None
    items: list[Any] = msgspec.field(default_factory=list)
    amount: Decimal = Decimal("1.50")


_decimals = st.decimals(allow_nan=True, allow_infinity=True)
_texts = st.text()


@st.composite
def _requests(draw: st.DrawFn) -> OrderRequest:
    fields: dict[str, Any] = {
        "client_order_id": draw(_texts),
        "tenant": draw(_texts),
        "account": draw(_texts),
        "ts_ns": draw(st.integers()),
        "symbol": draw(_texts),
        "action": draw(st.sampled_from(list(TradeAction))),
        "type": draw(st.sampled_from(list(OrderType))),
        "volume": draw(st.integers()),
        "price": draw(st.integers()),
        "filling": draw(st.sampled_from(list(OrderFilling))),
        "comment": draw(_texts),
        "strategy": draw(st.none() | _texts),
        "position": draw(st.integers(min_value=0, max_value=2**80)),
    }
    return OrderRequest(**fields)


@st.composite
def _deals(draw: st.DrawFn) -> Deal:
    return Deal(
        ticket=draw(st.integers()),
        type=draw(st.sampled_from(list(DealType))),
        entry=draw(st.sampled_from(list(DealEntry))),
        volume=draw(st.integers()),
        price=draw(st.integers()),
        commission=draw(_decimals),
        profit=draw(_decimals),
        swap=draw(_decimals),
        time_ns=draw(st.integers()),
        comment=draw(_texts),
    )


@settings(max_examples=300, deadline=None)
@given(_requests(), _deals())
def test_plain_of_requests_and_deals_is_the_field_walk(req: OrderRequest, deal: Deal) -> None:
    for value in (req, deal, TradeCommand(request=req)):
        assert plain(value) == _plain_exact(value)
        assert repr(plain(value)) == repr(_plain_exact(value))  # the same types too (str, not Decimal)


def test_plain_of_structs_msgspec_writes_otherwise_is_the_field_walk() -> None:
    deal = Deal(ticket=1, type=DealType.BUY, time_ns=5, profit=Decimal("-0.10"))
    ids: dict[str, Any] = {"tenant": "t", "account": "a", "client_order_id": "c", "ts_ns": 1}
    req = OrderRequest(**ids, symbol="X", action=TradeAction.DEAL)
    values: list[object] = [
        _Inner(),
        _Renamed(),
        _Omits(),
        _Array(),
        _Holder(value=_Inner()),
        _Holder(value=_Renamed()),
        _Holder(value=_Omits(a=2)),
        _Holder(value=_Array()),
        _Holder(value=msgspec.UNSET),
        _Holder(value=deal, items=[_Inner(), deal]),
        _Holder(value={"k": _Inner()}, amount=Decimal("NaN")),
        _Holder(value=(1, 2.5, Decimal("3"))),
        OrderSubmitted(**ids, request=req),
        OrderFilled(**ids, deal=deal),
        deal,
        req,
    ]
    for value in values:
        try:
            want: Any = _plain_exact(value)
        except TypeError as exc:
            want = type(exc)
        try:
            got: Any = plain(value)
        except TypeError as exc:
            got = type(exc)
        assert got == want, value
        assert repr(got) == repr(want)
    for _ in range(3):  # and again, with what `plain` remembered of the types
        assert plain(_Holder(value=_Inner())) == _plain_exact(_Holder(value=_Inner()))
        assert plain(deal) == _plain_exact(deal)


_TENANTS = [str(uuid.UUID(int=i + 1)) for i in range(2)]


def _events(seed: int, n: int) -> list[tuple[str, str, str, str, dict[str, Any], int]]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        how = rng.choice(["now", "later", "later", "later", "read"])
        payload: dict[str, Any] = {
            "i": i,
            "x": rng.choice(["a", "é", "\u2028", "q\"'\\"]),
            "d": str(Decimal(i) / 7),
        }
        if rng.random() < 0.1:
            payload["f"] = rng.random()  # the standard encoder's path
        actor = rng.choice(["engine", "agent", "brökér"])
        out.append(
            (
                how,
                rng.choice(_TENANTS),
                actor,
                rng.choice(["order.state", "deal.booked"]),
                payload,
                rng.randint(0, 2),
            )
        )
    return out


def test_memory_audit_timestamps_follow_the_test_clock_and_any_other_clock() -> None:
    clock = TestClock(1_704_067_200 * 10**9)
    audit = MemoryAudit(clock)
    for i in range(6):
        audit.append_now(_TENANTS[0], "engine", "tick", {"i": i})
        if i % 2:
            clock.advance(ns=1_000)
    records = audit.records(_TENANTS[0])
    assert [r.ts for r in records] == [
        TestClock(1_704_067_200 * 10**9 + k * 1_000).utcnow() for k in (0, 0, 1, 1, 2, 2)
    ]
    assert audit.verify(_TENANTS[0]).ok
    live = MemoryAudit(LiveClock())
    for i in range(5):
        live.append_now(_TENANTS[1], "engine", "tick", {"i": i})
    got = live.records(_TENANTS[1])
    assert [r.seq for r in got] == [1, 2, 3, 4, 5]
    assert all(a.ts <= b.ts for a, b in itertools.pairwise(got))
    assert live.verify(_TENANTS[1]).ok
