"""Identifiers, client order ids and bus subjects."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aitrading.common.bus.subjects import subject_matches, validate_pattern, validate_subject
from aitrading.model.ids import (
    MT5_COMMENT_MAX,
    ClientOrderIdGenerator,
    bar_pattern,
    bar_subject,
    client_order_id,
    client_order_id_time_ms,
    order_command_subject,
    order_event_pattern,
    order_event_subject,
    signal_subject,
    strategy_id,
    tenant_id,
    tick_pattern,
    tick_subject,
)
from aitrading.model.market import Timeframe


class StepClock:
    """A clock that returns the given milliseconds in turn (it may stand still or step back)."""

    def __init__(self, times_ms: list[int]) -> None:
        self._times = iter(times_ms)

    def now_ms(self) -> int:
        return next(self._times)

    def now_ns(self) -> int:
        return self.now_ms() * 1_000_000


def counter_bytes() -> object:
    counter = itertools.count()

    def random_bytes(n: int) -> bytes:
        return (next(counter) * 7919).to_bytes(n, "big")

    return random_bytes


@given(st.lists(st.integers(min_value=0, max_value=2**48 - 2), min_size=1, max_size=60))
def test_generated_ids_fit_mt5_comment_and_sort_in_creation_order(times: list[int]) -> None:
    gen = ClientOrderIdGenerator(StepClock(times))  # type: ignore[arg-type]
    ids = [gen() for _ in times]
    assert all(len(i) <= MT5_COMMENT_MAX for i in ids)
    assert all(client_order_id(i) == i for i in ids)
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)


def test_generated_id_carries_its_creation_time() -> None:
    gen = ClientOrderIdGenerator(StepClock([1_704_067_200_123]), prefix="X1")  # type: ignore[arg-type]
    cid = gen()
    assert cid.startswith("X1")
    assert len(cid) == 28
    assert client_order_id_time_ms(cid) == 1_704_067_200_123


def test_ids_stay_ordered_when_the_random_part_is_exhausted_in_one_millisecond() -> None:
    gen = ClientOrderIdGenerator(
        StepClock([5, 5, 5]),  # type: ignore[arg-type]
        random_bytes=lambda n: b"\xff" * n,
    )
    a, b, c = gen(), gen(), gen()
    assert a < b < c
    assert client_order_id_time_ms(c) == 6


def test_generators_in_two_processes_do_not_collide_in_the_same_millisecond() -> None:
    one = ClientOrderIdGenerator(StepClock([9] * 50))  # type: ignore[arg-type]
    two = ClientOrderIdGenerator(StepClock([9] * 50))  # type: ignore[arg-type]
    assert not {one() for _ in range(50)} & {two() for _ in range(50)}


@pytest.mark.parametrize("bad", ["", "a b", "x" * 32, "ü", "semi;colon"])
def test_client_order_id_outside_mt5_comment_rules_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="client order id"):
        client_order_id(bad)


def test_prefix_must_be_short_and_plain() -> None:
    with pytest.raises(ValueError, match="prefix"):
        ClientOrderIdGenerator(StepClock([]), prefix="TOOLONG")  # type: ignore[arg-type]


def test_tenant_scoped_subjects_are_built_from_safe_ids() -> None:
    assert order_command_subject(tenant_id("acme"), "acc-1") == "ord.cmd.acme.acc-1"
    assert order_event_subject("acme", "acc-1") == "ord.evt.acme.acc-1"
    assert signal_subject("acme", strategy_id("ema_cross")) == "sig.acme.ema_cross"


@pytest.mark.parametrize("bad", ["", "a.b", "a*", ">", "a b", "x" * 65])
def test_unsafe_tenant_ids_are_refused_rather_than_mangled(bad: str) -> None:
    with pytest.raises(ValueError, match="tenant id"):
        order_event_subject(bad, "acc")
    with pytest.raises(ValueError, match="tenant id"):
        tenant_id(bad)


def test_market_subjects_make_broker_names_subject_safe() -> None:
    assert tick_subject("ICMarkets-Demo", "EURUSD.r") == "md.tick.ICMarkets-Demo.EURUSD_r"
    assert bar_subject("ICMarkets-Demo", "US30#", Timeframe.H1) == "md.bar.ICMarkets-Demo.US30_.H1"
    assert bar_subject("f", "s", 16385) == bar_subject("f", "s", "h1") == "md.bar.f.s.H1"


def test_unknown_timeframe_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown timeframe"):
        bar_subject("f", "s", "M7")


@given(st.text(min_size=1, max_size=30), st.text(min_size=1, max_size=30), st.sampled_from(list(Timeframe)))
def test_any_feed_and_symbol_give_valid_subjects_matched_by_their_patterns(
    feed: str, symbol: str, tf: Timeframe
) -> None:
    tick = validate_subject(tick_subject(feed, symbol))
    bar = validate_subject(bar_subject(feed, symbol, tf))
    assert subject_matches(validate_pattern(tick_pattern(feed)), tick)
    assert subject_matches(validate_pattern(tick_pattern()), tick)
    assert subject_matches(validate_pattern(bar_pattern(feed, tf)), bar)
    assert subject_matches(validate_pattern(bar_pattern()), bar)
    assert not subject_matches(tick_pattern(), bar)


@given(
    st.from_regex(r"[A-Za-z0-9_-]{1,63}", fullmatch=True),  # 63: the test appends a character (limit 64)
    st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True),
)
def test_order_event_pattern_of_a_tenant_matches_only_that_tenant(tenant: str, account: str) -> None:
    subject = validate_subject(order_event_subject(tenant, account))
    assert subject_matches(order_event_pattern(tenant), subject)
    assert subject_matches(order_event_pattern(), subject)
    assert not subject_matches(order_event_pattern(tenant + "x"), subject)
