"""The in-process cache: values, TTLs on the injected clock, fixed-window counters, hashes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aitrading.common.clock import TestClock
from aitrading.common.errors import BadInputError, ConfigError
from aitrading.storage.cache import Cache, MemoryCache, RedisCache, make_cache


@pytest.fixture
def clock() -> TestClock:
    return TestClock()


@pytest.fixture
def cache(clock: TestClock) -> MemoryCache:
    return MemoryCache(clock)


async def test_set_value_is_returned_until_deleted(cache: MemoryCache) -> None:
    await cache.set("k", b"v")
    assert await cache.get("k") == b"v"
    assert await cache.delete("k") is True
    assert await cache.get("k") is None
    assert await cache.delete("k") is False


async def test_missing_key_reads_as_none(cache: MemoryCache) -> None:
    assert await cache.get("nope") is None


async def test_value_expires_after_its_ttl_on_the_injected_clock(
    cache: MemoryCache, clock: TestClock
) -> None:
    await cache.set("k", b"v", ttl=10)
    clock.advance(9.999)
    assert await cache.get("k") == b"v"
    clock.advance(0.001)
    assert await cache.get("k") is None
    assert await cache.delete("k") is False


async def test_set_without_ttl_clears_an_earlier_ttl(cache: MemoryCache, clock: TestClock) -> None:
    await cache.set("k", b"1", ttl=1)
    await cache.set("k", b"2")
    clock.advance(3600)
    assert await cache.get("k") == b"2"


@pytest.mark.parametrize("ttl", [0, -1, float("nan"), float("inf")])
async def test_non_positive_or_non_finite_ttl_is_rejected(cache: MemoryCache, ttl: float) -> None:
    with pytest.raises(BadInputError, match="TTL"):
        await cache.set("k", b"v", ttl=ttl)


async def test_incr_counts_from_zero_and_reads_back_as_decimal_bytes(cache: MemoryCache) -> None:
    assert await cache.incr("n") == 1
    assert await cache.incr("n", 5) == 6
    assert await cache.incr("n", -2) == 4
    assert await cache.get("n") == b"4"


async def test_incr_ttl_sets_one_fixed_window_that_later_calls_do_not_extend(
    cache: MemoryCache, clock: TestClock
) -> None:
    assert await cache.incr("rate", ttl=60) == 1
    clock.advance(59)
    assert await cache.incr("rate", ttl=60) == 2
    clock.advance(1)
    assert await cache.incr("rate", ttl=60) == 1


async def test_incr_ttl_applies_to_a_counter_that_had_none(cache: MemoryCache, clock: TestClock) -> None:
    await cache.incr("n")
    await cache.incr("n", ttl=5)
    clock.advance(5)
    assert await cache.get("n") is None


async def test_incr_of_a_non_integer_value_is_rejected(cache: MemoryCache) -> None:
    await cache.set("k", b"abc")
    with pytest.raises(BadInputError, match="integer"):
        await cache.incr("k")


@given(st.lists(st.integers(min_value=-(10**12), max_value=10**12), min_size=1, max_size=50))
async def test_incr_returns_the_running_sum_of_the_amounts(amounts: list[int]) -> None:
    cache = MemoryCache(TestClock())
    total = 0
    for amount in amounts:
        total += amount
        assert await cache.incr("n", amount) == total


async def test_hset_merges_fields_and_hgetall_returns_them_all(cache: MemoryCache) -> None:
    await cache.hset("ticks:SIM", {"EURUSD": b"1.1", "GBPUSD": b"1.2"})
    await cache.hset("ticks:SIM", {"EURUSD": b"1.3"})
    assert await cache.hgetall("ticks:SIM") == {"EURUSD": b"1.3", "GBPUSD": b"1.2"}
    assert await cache.hget("ticks:SIM", "GBPUSD") == b"1.2"
    assert await cache.hget("ticks:SIM", "USDJPY") is None


async def test_hgetall_of_a_missing_hash_is_empty(cache: MemoryCache) -> None:
    assert await cache.hgetall("none") == {}
    await cache.hset("none", {})
    assert await cache.delete("none") is False


async def test_hgetall_returns_a_copy_the_caller_may_change(cache: MemoryCache) -> None:
    await cache.hset("h", {"a": b"1"})
    (await cache.hgetall("h"))["b"] = b"2"
    assert await cache.hgetall("h") == {"a": b"1"}


async def test_delete_removes_a_hash(cache: MemoryCache) -> None:
    await cache.hset("h", {"a": b"1"})
    assert await cache.delete("h") is True
    assert await cache.hgetall("h") == {}


async def test_using_a_key_as_the_wrong_type_is_rejected(cache: MemoryCache) -> None:
    await cache.hset("h", {"a": b"1"})
    await cache.set("v", b"1")
    with pytest.raises(BadInputError, match="hash"):
        await cache.get("h")
    with pytest.raises(BadInputError, match="hash"):
        await cache.incr("h")
    with pytest.raises(BadInputError, match="not a hash"):
        await cache.hset("v", {"a": b"1"})
    with pytest.raises(BadInputError, match="not a hash"):
        await cache.hgetall("v")


async def test_expired_keys_that_are_never_read_are_swept_away(cache: MemoryCache, clock: TestClock) -> None:
    for i in range(100):
        await cache.set(f"old{i}", b"x", ttl=1)
    clock.advance(2)
    for i in range(MemoryCache._SWEEP_EVERY):
        await cache.set(f"new{i}", b"x")
    assert len(cache._data) == MemoryCache._SWEEP_EVERY


async def test_memory_cache_pings_and_forgets_everything_on_close(cache: MemoryCache) -> None:
    await cache.set("k", b"v")
    assert await cache.ping() is True
    await cache.close()
    assert await cache.get("k") is None


async def test_make_cache_builds_the_configured_kind(clock: TestClock) -> None:
    memory = make_cache("memory", clock=clock)
    assert isinstance(memory, MemoryCache)
    redis = make_cache("redis", "redis://127.0.0.1:1/0", "p:")
    assert isinstance(redis, RedisCache)
    assert isinstance(redis, Cache)
    await redis.close()


def test_make_cache_for_redis_without_a_url_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="redis_url"):
        make_cache("redis", "")


def test_make_cache_of_an_unknown_kind_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown cache kind"):
        make_cache("memcached", "x")  # type: ignore[arg-type]
