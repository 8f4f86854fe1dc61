"""The books' index of working orders answers what scanning every order answered, in the same order.

A snapshot after every execution asks for the working orders, so the books keep their ids instead of
scanning every order the account ever had; any sequence of new, changed, finished, revived and dropped
orders must give the scan's list.
"""

from __future__ import annotations

from decimal import Decimal

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from aitrading.engine.books import AccountBook
from aitrading.model.accounts import AccountState
from aitrading.model.enums import MarginMode, OrderState, OrderType
from aitrading.model.ids import AccountId, ClientOrderId, TenantId
from aitrading.model.orders import Order


def _book() -> AccountBook:
    state = AccountState.of(
        login=1, currency="USD", leverage=100, margin_mode=MarginMode.RETAIL_HEDGING, balance=Decimal(1000)
    )
    return AccountBook(TenantId("t"), AccountId("1"), "feed", state)


def _order(n: int, state: OrderState) -> Order:
    return Order(
        client_order_id=ClientOrderId(f"C{n}"),
        tenant=TenantId("t"),
        account=AccountId("1"),
        symbol="EURUSD",
        type=OrderType.BUY,
        state=state,
        volume=10_000_000,
        time_setup_ns=n,
    )


def _scan(book: AccountBook) -> list[Order]:
    return [o for o in book.orders.values() if not o.is_terminal]


steps = st.lists(
    st.tuples(st.integers(min_value=0, max_value=7), st.sampled_from([*OrderState, None])), max_size=60
)


@given(steps)
def test_working_orders_equal_a_scan_of_all_orders_after_any_sequence(
    sequence: list[tuple[int, object]],
) -> None:
    book = _book()
    for n, state in sequence:
        coid = ClientOrderId(f"C{n}")
        if state is None:  # the order's row could not be written: forgotten
            if coid in book.orders:
                book.drop_order(coid)
            continue
        assert isinstance(state, OrderState)
        book.put_order(_order(n, state))
        assert book.working_orders() == _scan(book)
    assert book.working_orders() == _scan(book)


def test_an_order_that_fills_leaves_the_working_orders_and_a_new_one_joins_at_the_end() -> None:
    book = _book()
    first, second = _order(1, OrderState.REQUEST_ADD), _order(2, OrderState.PLACED)
    book.put_order(first)
    book.put_order(second)
    assert book.working_orders() == [first, second]
    filled = msgspec.structs.replace(first, state=OrderState.FILLED)
    book.put_order(filled)
    assert book.working_orders() == [second]
    third = _order(3, OrderState.REQUEST_ADD)
    book.put_order(third)
    assert book.working_orders() == [second, third]
    assert book.orders[first.client_order_id] is filled
