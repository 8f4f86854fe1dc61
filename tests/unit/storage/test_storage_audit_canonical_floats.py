"""Floats in `canonical_json`'s quick path: every float it lets msgspec write comes out as the standard
encoder (`float.__repr__`) writes it — Hypothesis floats of every kind (subnormal, huge, tiny, negative
zero, integers as floats), random bit patterns, the neighbours of every power of ten and of both range
ends — and every other float (outside the range, NaN, infinities) still takes the standard encoder,
answer or error alike."""

from __future__ import annotations

import math
import random
import struct
from typing import Any

import msgspec
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from aitrading.storage.audit.chain import _CANONICAL, _FLOAT_HIGH, _FLOAT_LOW, _same_float, canonical_json

_QUICK = msgspec.json.Encoder(order="sorted")


def _agree(value: float) -> None:
    """`value`, where the quick path takes it, is written as the standard encoder writes it."""
    if _same_float(value):
        assert _QUICK.encode(value).decode() == float.__repr__(value) == _CANONICAL.encode(value), value


def _neighbours(value: float, n: int) -> list[float]:
    out, up, down = [value], value, value
    for _ in range(n):
        up, down = math.nextafter(up, math.inf), math.nextafter(down, -math.inf)
        out += [up, down]
    return out + [-v for v in out]


_floats = (
    st.floats()
    | st.floats(min_value=-1e20, max_value=1e20)
    | st.floats(min_value=-1e-3, max_value=1e-3)
    | st.floats(min_value=0.5, max_value=2.0)
    | st.integers(min_value=-(2**60), max_value=2**60).map(float)
    | st.integers(min_value=0, max_value=2**64 - 1).map(
        lambda bits: struct.unpack("<d", bits.to_bytes(8, "little"))[0]
    )
)


@settings(max_examples=3000, deadline=None)
@given(_floats)
@example(0.0)
@example(-0.0)
@example(5e-324)
@example(-2.2250738585072014e-308)
@example(1.7976931348623157e308)
@example(1e-4)
@example(1e16)
@example(9999999999999998.0)
@example(123456789.0)
@example(0.1)
def test_quick_path_floats_are_written_as_float_repr(value: float) -> None:
    _agree(value)
    payload = {"v": value, "l": [value, 1, "x"], "d": {"k": (value,)}}
    try:
        want: Any = _CANONICAL.encode(payload)
    except ValueError as exc:
        want = type(exc)
    try:
        got: Any = canonical_json(payload)
    except ValueError as exc:
        got = type(exc)
    assert got == want


def test_random_bit_patterns_within_the_range() -> None:
    rng = random.Random(20261122)
    low, high = math.log10(_FLOAT_LOW), math.log10(_FLOAT_HIGH)
    for _ in range(200_000):
        value = rng.uniform(1.0, 10.0) * 10 ** rng.randint(int(low), int(high) - 1)
        value = struct.unpack("<d", struct.pack("<d", value))[0]
        for v in (value, -value, float(round(value))):
            _agree(v)
    for _ in range(200_000):  # any 64 bits
        _agree(struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))[0])


def test_neighbours_of_powers_of_ten_and_of_the_range_ends() -> None:
    for exp in range(-6, 19):
        for v in _neighbours(10.0**exp, 300):
            _agree(v)
        for v in _neighbours(float(f"1e{exp}"), 300):
            _agree(v)
    for v in _neighbours(_FLOAT_LOW, 2000) + _neighbours(_FLOAT_HIGH, 2000):
        _agree(v)


def test_the_range_ends_are_where_the_two_texts_part() -> None:
    below_low = math.nextafter(_FLOAT_LOW, 0.0)
    assert not _same_float(below_low)
    assert not _same_float(_FLOAT_HIGH)
    assert _same_float(_FLOAT_LOW)
    assert _same_float(math.nextafter(_FLOAT_HIGH, 0.0))
    # Outside, the texts differ: the quick path must not take these.
    assert _QUICK.encode(_FLOAT_HIGH).decode() != float.__repr__(_FLOAT_HIGH)
    assert _QUICK.encode(1e-5).decode() != float.__repr__(1e-5)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_floats_are_refused_as_before(value: float) -> None:
    assert not _same_float(value)
    for payload in ({"v": value}, {"l": [1.0, value]}, {"d": {"k": (value, 2.5)}}):
        with pytest.raises(ValueError, match="Out of range float values are not JSON compliant"):
            canonical_json(payload)


def test_float_subclasses_take_the_standard_encoder() -> None:
    class _F(float):
        def __repr__(self) -> str:
            return "odd"

    payload = {"v": _F(1.5), "w": 2.5}
    assert canonical_json(payload) == _CANONICAL.encode(payload)
