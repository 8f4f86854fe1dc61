"""`canonical_json`'s quick encoder (msgspec, sorted keys) writes exactly what the standard-library encoder
it stands in for writes, and every value it does not take (floats, sets, datetimes, non-str keys, structs,
subclasses, lone surrogates, deep or circular values) still takes that encoder, answer or error alike.
`event_hash`'s one-string text is `canonical_event`'s."""

from __future__ import annotations

import enum
import hashlib
import uuid
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aitrading.storage.audit.chain import (
    _CANONICAL,
    GENESIS_HASH,
    canonical_event,
    canonical_json,
    event_hash,
)

_ints = (
    st.integers() | st.integers(min_value=-(2**70), max_value=2**70) | st.sampled_from([2**63, -(2**63) - 1])
)
_decimals = st.decimals(allow_nan=True, allow_infinity=True) | st.sampled_from(
    [Decimal("-0"), Decimal("1E+2"), Decimal("0E-10"), Decimal("sNaN"), Decimal("-Infinity")]
)
_texts = (
    st.text() | st.text(alphabet=st.characters(max_codepoint=0x40)) | st.sampled_from(["\u2028", "\x7f", "é"])
)
_leaves = st.none() | st.booleans() | _ints | _texts | _decimals
_plain = st.recursive(
    _leaves,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.lists(inner, max_size=4).map(tuple)
        | st.dictionaries(_texts, inner, max_size=5)
    ),
    max_leaves=30,
)


def _reference(value: Any) -> str:
    return _CANONICAL.encode(value)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(_texts, _plain, max_size=8))
def test_plain_payloads_encode_as_the_standard_encoder_writes_them(payload: dict[str, Any]) -> None:
    assert canonical_json(payload) == _reference(payload)


def test_every_character_is_escaped_as_the_standard_encoder_escapes_it() -> None:
    for cp in list(range(0x800)) + list(range(0xD7F0, 0xE010)) + [0xFFFF, 0x10000, 0x10FFFF]:
        payload = {chr(cp): chr(cp), "k": [chr(cp) * 2]}
        assert canonical_json(payload) == _reference(payload), hex(cp)


class _Colour(enum.IntEnum):
    RED = 1


class _Name(enum.StrEnum):
    A = "a"


class _Text(str):
    pass


class _Point(msgspec.Struct):
    x: int


_OTHERS: list[Any] = [
    1.5,
    1e16,
    float("nan"),
    {1, 2},
    frozenset({"b", "a"}),
    datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
    datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=2))),
    date(2024, 1, 2),
    uuid.UUID(int=5),
    _Colour.RED,
    _Name.A,
    _Text("x"),
    True,
    _Point(x=1),
    b"bytes",
    object(),
]


@pytest.mark.parametrize("other", _OTHERS, ids=lambda v: type(v).__name__)
def test_other_values_take_the_standard_encoder(other: Any) -> None:
    for payload in ({"v": other}, {"a": [1, {"v": other}]}, {"a": (other, "x")}):
        try:
            want: Any = _reference(payload)
        except (TypeError, ValueError) as exc:
            want = type(exc)
        try:
            got: Any = canonical_json(payload)
        except (TypeError, ValueError) as exc:
            got = type(exc)
        assert got == want


def test_non_str_keys_lone_surrogates_and_non_dicts_take_the_standard_encoder() -> None:
    for value in (
        {2: "a", 10: "b"},
        {"a": {1: 2}},
        {"s": "\ud800"},
        {"\udfff": 1},
        [1, "a"],
        "text",
        5,
        None,
    ):
        assert canonical_json(value) == _reference(value)
    with pytest.raises(TypeError):
        canonical_json({1: "a", "b": 2})  # keys that do not sort: refused as before


def test_circular_and_deep_values_are_refused_or_written_as_before() -> None:
    circular: dict[str, Any] = {}
    circular["me"] = circular
    with pytest.raises(ValueError, match="Circular"):
        canonical_json(circular)
    deep: dict[str, Any] = {"v": 1}
    for i in range(60):
        deep = {"d": deep} if i % 2 else {"l": [deep, i]}
    assert canonical_json(deep) == _reference(deep)


@settings(max_examples=300, deadline=None)
@given(
    prev=st.sampled_from([GENESIS_HASH, "ab" * 32]),
    seq=st.integers(min_value=1, max_value=2**40),
    ts=st.datetimes(timezones=st.just(UTC)),
    actor=st.text(min_size=1),
    kind=st.text(min_size=1),
    payload=st.text(),
)
def test_event_hash_is_sha256_of_prev_hash_and_canonical_event(
    prev: str, seq: int, ts: datetime, actor: str, kind: str, payload: str
) -> None:
    try:
        want: Any = hashlib.sha256(
            (prev + canonical_event(seq, ts, actor, kind, payload)).encode()
        ).hexdigest()
    except UnicodeEncodeError:
        want = UnicodeEncodeError
    try:
        got: Any = event_hash(prev, seq, ts, actor, kind, payload)
    except UnicodeEncodeError:
        got = UnicodeEncodeError
    assert got == want
