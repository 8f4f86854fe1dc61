"""`transition`'s quick answers for an order's submission and acceptance are what its steps (`_steps`) give:
the same order field for field, or the same refusal, in every state, with tickets that repeat or not and
requests of this order or another."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from model_samples import ACCOUNT, CID, T0, TENANT, order, request

from aitrading.common.errors import BadInputError
from aitrading.model.enums import OrderState
from aitrading.model.events import OrderAccepted, OrderCanceled, OrderEvent, OrderRejected, OrderSubmitted
from aitrading.model.ids import ClientOrderId
from aitrading.model.orders import Order, _steps, transition

_OTHER = ClientOrderId("AI01HYYYYYYYYYYYYYYYYYYYYYY")


def _outcome(fn: Any, o: Order, event: OrderEvent) -> Any:
    try:
        result = fn(o, event)
    except BadInputError as exc:  # OrderStateError included
        return type(exc), str(exc)
    return type(result), msgspec.structs.asdict(result), repr(result), result is o


@settings(max_examples=500, deadline=None)
@given(
    state=st.sampled_from(list(OrderState)),
    ticket=st.sampled_from([0, 7, 8]),
    volume_filled=st.sampled_from([0, 1]),
    event_ticket=st.sampled_from([0, 7, 8]),
    retcode=st.sampled_from([10008, 10009]),
    ts=st.integers(min_value=0, max_value=2**62),
    same_request=st.booleans(),
    kind=st.sampled_from(["accepted", "submitted", "rejected", "canceled"]),
)
def test_quick_answers_are_the_steps_answers(
    state: OrderState,
    ticket: int,
    volume_filled: int,
    event_ticket: int,
    retcode: int,
    ts: int,
    same_request: bool,
    kind: str,
) -> None:
    o = msgspec.structs.replace(order(), state=state, ticket=ticket, volume_filled=volume_filled)
    common: dict[str, Any] = {"tenant": TENANT, "account": ACCOUNT, "client_order_id": CID, "ts_ns": T0 + ts}
    event: OrderEvent
    if kind == "accepted":
        event = OrderAccepted(**common, ticket=event_ticket, retcode=retcode)
    elif kind == "submitted":
        event = OrderSubmitted(**common, request=request(client_order_id=CID if same_request else _OTHER))
    elif kind == "rejected":
        event = OrderRejected(**common, retcode=10006, text="no")
    else:
        event = OrderCanceled(**common, reason="done")
    assert _outcome(transition, o, event) == _outcome(_steps, o, event)


def test_an_event_of_another_order_is_refused_before_any_quick_answer() -> None:
    o = msgspec.structs.replace(order(), state=OrderState.REQUEST_ADD)
    event = OrderAccepted(
        tenant=TENANT, account=ACCOUNT, client_order_id=_OTHER, ts_ns=T0, ticket=5, retcode=10009
    )
    with pytest.raises(BadInputError, match="applied to order"):
        transition(o, event)
