"""The Redis cache against a real Redis (database 15, flushed first): same behaviour as the memory cache."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from aitrading.common.errors import BadInputError, TemporaryError
from aitrading.storage.cache import RedisCache, make_cache

pytestmark = pytest.mark.integration

PREFIX = "test:"


@pytest.fixture
async def raw(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    await client.flushdb()
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def cache(redis_url: str, raw: Redis) -> AsyncIterator[RedisCache]:
    c = RedisCache(redis_url, prefix=PREFIX)
    try:
        yield c
    finally:
        await c.close()


async def test_set_value_is_returned_until_deleted(cache: RedisCache) -> None:
    await cache.set("k", b"\x00\xffv")
    assert await cache.get("k") == b"\x00\xffv"
    assert await cache.delete("k") is True
    assert await cache.get("k") is None
    assert await cache.delete("k") is False


async def test_keys_are_stored_under_the_prefix(cache: RedisCache, raw: Redis) -> None:
    await cache.set("k", b"v")
    assert await raw.get(PREFIX + "k") == b"v"
    assert await raw.get("k") is None


async def test_value_with_ttl_gets_a_redis_expiry_and_expires(cache: RedisCache, raw: Redis) -> None:
    await cache.set("k", b"v", ttl=30)
    assert 0 < await raw.pttl(PREFIX + "k") <= 30_000
    await cache.set("short", b"v", ttl=0.05)
    await asyncio.sleep(0.2)
    assert await cache.get("short") is None


async def test_set_without_ttl_clears_an_earlier_ttl(cache: RedisCache, raw: Redis) -> None:
    await cache.set("k", b"1", ttl=30)
    await cache.set("k", b"2")
    assert await raw.pttl(PREFIX + "k") == -1


async def test_incr_counts_and_reads_back_as_decimal_bytes(cache: RedisCache) -> None:
    assert await cache.incr("n") == 1
    assert await cache.incr("n", 5) == 6
    assert await cache.incr("n", -2) == 4
    assert await cache.get("n") == b"4"


async def test_incr_ttl_sets_one_fixed_window_that_later_calls_do_not_extend(
    cache: RedisCache, raw: Redis
) -> None:
    assert await cache.incr("rate", ttl=60) == 1
    await raw.pexpire(PREFIX + "rate", 10_000)  # as if 50 s of the window had passed
    assert await cache.incr("rate", ttl=60) == 2
    assert 0 < await raw.pttl(PREFIX + "rate") <= 10_000


async def test_incr_ttl_applies_to_a_counter_that_had_none(cache: RedisCache, raw: Redis) -> None:
    await cache.incr("n")
    await cache.incr("n", ttl=5)
    assert 0 < await raw.pttl(PREFIX + "n") <= 5_000


async def test_incr_of_a_non_integer_value_is_rejected(cache: RedisCache) -> None:
    await cache.set("k", b"abc")
    with pytest.raises(BadInputError):
        await cache.incr("k")


async def test_hset_merges_fields_and_hgetall_returns_them_all(cache: RedisCache) -> None:
    await cache.hset("ticks:SIM", {"EURUSD": b"1.1", "GBPUSD": b"1.2"})
    await cache.hset("ticks:SIM", {"EURUSD": b"1.3"})
    await cache.hset("ticks:SIM", {})
    assert await cache.hgetall("ticks:SIM") == {"EURUSD": b"1.3", "GBPUSD": b"1.2"}
    assert await cache.hget("ticks:SIM", "GBPUSD") == b"1.2"
    assert await cache.hget("ticks:SIM", "USDJPY") is None
    assert await cache.hgetall("none") == {}


async def test_using_a_key_as_the_wrong_type_is_rejected(cache: RedisCache) -> None:
    await cache.hset("h", {"a": b"1"})
    await cache.set("v", b"1")
    with pytest.raises(BadInputError, match="WRONGTYPE"):
        await cache.get("h")
    with pytest.raises(BadInputError, match="WRONGTYPE"):
        await cache.hgetall("v")


async def test_redis_cache_answers_ping(cache: RedisCache) -> None:
    assert await cache.ping() is True


async def test_make_cache_builds_a_working_redis_cache(redis_url: str, raw: Redis) -> None:
    cache = make_cache("redis", redis_url, "made:")
    try:
        await cache.set("k", b"v")
        assert await raw.get("made:k") == b"v"
    finally:
        await cache.close()


async def test_unreachable_redis_fails_ping_and_raises_a_temporary_error() -> None:
    cache = RedisCache("redis://127.0.0.1:1/0")
    try:
        assert await cache.ping() is False
        with pytest.raises(TemporaryError, match="redis unavailable"):
            await cache.get("k")
    finally:
        await cache.close()
