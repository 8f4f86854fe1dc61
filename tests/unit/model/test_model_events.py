"""Every domain bus message round-trips through the bus codec, whatever it carries."""

from __future__ import annotations

import enum
import types
import typing
from decimal import Decimal
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from model_samples import ACCOUNT, T0, TENANT, common, request

from aitrading.common.bus import codec, decode, encode
from aitrading.common.lifecycle import ComponentState
from aitrading.model import commands, events
from aitrading.model.accounts import AccountState
from aitrading.model.deals import Deal
from aitrading.model.enums import DealType, MarginMode, Side
from aitrading.model.positions import Position

MODEL_MESSAGES = sorted(
    (
        cls
        for cls in codec.Message.registry.values()
        if cls.__module__ in (events.__name__, commands.__name__)
    ),
    key=lambda cls: cls.__name__,
)
ints = st.integers(min_value=-(2**63), max_value=2**63 - 1)
money = st.decimals(allow_nan=False, allow_infinity=False, places=2, min_value=-(10**15), max_value=10**15)
exact = st.decimals(allow_nan=False, allow_infinity=False)
ids = st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True)


def _accounts() -> st.SearchStrategy[AccountState]:
    return st.builds(
        AccountState.of,
        login=st.integers(0, 2**40),
        currency=st.sampled_from(["USD", "EUR", "JPY"]),
        leverage=st.integers(1, 1000),
        margin_mode=st.sampled_from(list(MarginMode)),
        balance=money,
        credit=money,
        floating=money,
        margin=money.map(abs),
    )


def strategy_for(tp: Any) -> st.SearchStrategy[Any]:
    """Values of a message field's type (recursing into the model's structs)."""
    if typing.get_origin(tp) in (types.UnionType, typing.Union):
        return st.one_of([strategy_for(t) for t in typing.get_args(tp)])
    if typing.get_origin(tp) is tuple:
        return st.lists(strategy_for(typing.get_args(tp)[0]), max_size=4).map(tuple)
    if isinstance(tp, typing.NewType):
        return ids
    special: dict[Any, st.SearchStrategy[Any]] = {
        type(None): st.none(),
        int: ints,
        str: st.text(max_size=40),
        Decimal: exact,
        AccountState: _accounts(),
        ComponentState: st.sampled_from(list(ComponentState)),
    }
    if tp in special:
        return special[tp]
    if isinstance(tp, type) and issubclass(tp, enum.IntEnum):
        return st.sampled_from(list(tp))
    if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
        fields = {f.name: strategy_for(f.type) for f in msgspec.structs.fields(tp)}
        return st.builds(tp, **fields)
    raise TypeError(f"no strategy for {tp!r}")


def test_the_domain_messages_are_all_registered() -> None:
    names = {cls.__name__ for cls in MODEL_MESSAGES}
    expected = {n for n in events.__all__ if n != "OrderEvent"} | {"TradeCommand"}
    assert names == expected


@pytest.mark.parametrize("cls", MODEL_MESSAGES, ids=lambda cls: cls.__name__)
@settings(max_examples=40)
@given(data=st.data())
def test_every_domain_message_round_trips_through_the_bus_codec(
    cls: type[codec.Message], data: st.DataObject
) -> None:
    msg = data.draw(strategy_for(cls))
    back = decode(encode(msg))
    assert type(back) is cls
    assert back == msg


def test_large_exact_amounts_survive_where_msgpack_ints_would_overflow() -> None:
    big = Deal(
        ticket=1,
        symbol="XAUUSD",
        type=DealType.BUY,
        volume=10**12,
        price=2_345_670_000_000,
        time_ns=T0,
        profit=Decimal("123456789012345678901234.56"),
    )
    position = Position(
        ticket=1,
        identifier=1,
        symbol="BTCUSD",
        type=Side.BUY,
        volume=10**10,
        cost=Decimal("6000000.12345678901234567"),  # 6e23 notional units: beyond a 64-bit int
    )
    for msg in (
        events.OrderFilled(**common(), deal=big),
        events.PositionOpened(tenant=TENANT, account=ACCOUNT, ts_ns=T0, position=position, deal=1),
        commands.TradeCommand(request=request()),
    ):
        assert decode(encode(msg)) == msg
