"""A small async key-value cache: latest ticks, sessions, rate-limit counters, prediction results.

`MemoryCache` serves the all-in-one process and tests (time comes from an injected `Clock`, so TTLs follow a
`TestClock`); `RedisCache` serves split deployments (Redis or DragonflyDB). Both behave alike: values are
bytes, keys are strings, a counter reads back as its decimal bytes (as in Redis), TTLs are seconds.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal, cast

from aitrading.common.clock import Clock, LiveClock
from aitrading.common.errors import BadInputError, ConfigError, TemporaryError

__all__ = ["Cache", "MemoryCache", "RedisCache", "make_cache"]

_NS_PER_S = 1_000_000_000


def _ttl_ms(ttl: float | None) -> int | None:
    if ttl is None:
        return None
    if not math.isfinite(ttl) or ttl <= 0:
        raise BadInputError(f"cache TTL must be a positive number of seconds, got {ttl!r}")
    return max(1, math.ceil(ttl * 1000))


class Cache(ABC):
    """The cache interface every implementation honours."""

    @abstractmethod
    async def get(self, key: str) -> bytes | None:
        """Return the value at `key`, or None if absent or expired."""

    @abstractmethod
    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        """Store `value` at `key`, replacing any value and TTL; it expires after `ttl` seconds if given."""

    @abstractmethod
    async def delete(self, key: str) -> bool:
        """Remove `key` (a value or a hash); return whether it existed."""

    @abstractmethod
    async def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        """Add `amount` to the counter at `key` (absent counts as 0) and return the new value.

        `ttl` applies only while the counter has no expiry yet (normally: when it is created), so repeated
        calls count within one fixed window (the rate-limit pattern) instead of extending it.
        """

    @abstractmethod
    async def hset(self, key: str, mapping: Mapping[str, bytes]) -> None:
        """Set fields of the hash at `key` (e.g. the latest tick per symbol), keeping other fields."""

    @abstractmethod
    async def hget(self, key: str, field: str) -> bytes | None:
        """Return one field of the hash at `key`, or None."""

    @abstractmethod
    async def hgetall(self, key: str) -> dict[str, bytes]:
        """Return every field of the hash at `key` (empty if absent)."""

    @abstractmethod
    async def ping(self) -> bool:
        """Tell whether the cache answers."""

    @abstractmethod
    async def close(self) -> None:
        """Release connections; the cache is not used afterwards."""


@dataclass(slots=True)
class _Entry:
    value: bytes | dict[str, bytes]
    expires_ns: int | None = None


class MemoryCache(Cache):
    """An in-process cache; TTLs are measured on the injected clock's monotonic time."""

    _SWEEP_EVERY = 1024  # writes between purges of expired keys, so unread keys do not pile up

    def __init__(self, clock: Clock | None = None) -> None:
        self._clock: Clock = clock or LiveClock()
        self._data: dict[str, _Entry] = {}
        self._writes = 0

    def _expiry(self, ttl: float | None) -> int | None:
        ms = _ttl_ms(ttl)
        return None if ms is None else self._clock.monotonic_ns() + ms * 1_000_000

    def _live(self, key: str) -> _Entry | None:
        entry = self._data.get(key)
        if entry is None:
            return None
        if entry.expires_ns is not None and self._clock.monotonic_ns() >= entry.expires_ns:
            del self._data[key]
            return None
        return entry

    def _wrote(self) -> None:
        self._writes += 1
        if self._writes % self._SWEEP_EVERY == 0:
            now = self._clock.monotonic_ns()
            for key in [k for k, e in self._data.items() if e.expires_ns is not None and now >= e.expires_ns]:
                del self._data[key]

    async def get(self, key: str) -> bytes | None:
        entry = self._live(key)
        if entry is None:
            return None
        if isinstance(entry.value, dict):
            raise BadInputError(f"cache key {key!r} holds a hash, not a value")
        return entry.value

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        self._data[key] = _Entry(bytes(value), self._expiry(ttl))
        self._wrote()

    async def delete(self, key: str) -> bool:
        existed = self._live(key) is not None
        self._data.pop(key, None)
        return existed

    async def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        entry = self._live(key)
        if entry is None:
            self._data[key] = _Entry(str(amount).encode(), self._expiry(ttl))
            self._wrote()
            return amount
        if isinstance(entry.value, dict):
            raise BadInputError(f"cache key {key!r} holds a hash, not a counter")
        try:
            value = int(entry.value) + amount
        except ValueError:
            raise BadInputError(f"cache key {key!r} does not hold an integer") from None
        entry.value = str(value).encode()
        if entry.expires_ns is None:
            entry.expires_ns = self._expiry(ttl)
        return value

    async def hset(self, key: str, mapping: Mapping[str, bytes]) -> None:
        entry = self._live(key)
        if entry is None and not mapping:
            return
        if entry is None:
            entry = self._data[key] = _Entry({})
            self._wrote()
        if not isinstance(entry.value, dict):
            raise BadInputError(f"cache key {key!r} holds a value, not a hash")
        entry.value.update((f, bytes(v)) for f, v in mapping.items())

    async def hget(self, key: str, field: str) -> bytes | None:
        return (await self.hgetall(key)).get(field)

    async def hgetall(self, key: str) -> dict[str, bytes]:
        entry = self._live(key)
        if entry is None:
            return {}
        if not isinstance(entry.value, dict):
            raise BadInputError(f"cache key {key!r} holds a value, not a hash")
        return dict(entry.value)

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        self._data.clear()


@contextmanager
def _redis_errors(key: str) -> Iterator[None]:
    """Raise what `MemoryCache` raises: BadInputError for a wrong-type key; TemporaryError if unreachable."""
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import ResponseError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    try:
        yield
    except ResponseError as exc:
        raise BadInputError(f"cache key {key!r}: {exc}") from exc
    except (RedisConnectionError, RedisTimeoutError) as exc:
        raise TemporaryError(f"redis unavailable: {exc}") from exc


class RedisCache(Cache):
    """A cache in Redis (or DragonflyDB); keys are stored under `prefix` so deployments can share a server."""

    def __init__(self, url: str, prefix: str = "aitrading:") -> None:
        from redis.asyncio import Redis

        self._redis = Redis.from_url(url, decode_responses=False)
        self._prefix = prefix

    def _k(self, key: str) -> str:
        return self._prefix + key

    async def get(self, key: str) -> bytes | None:
        with _redis_errors(key):
            return cast("bytes | None", await self._redis.get(self._k(key)))

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        ms = _ttl_ms(ttl)
        with _redis_errors(key):
            await self._redis.set(self._k(key), value, px=ms)

    async def delete(self, key: str) -> bool:
        with _redis_errors(key):
            return bool(await self._redis.delete(self._k(key)))

    async def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        ms = _ttl_ms(ttl)
        with _redis_errors(key):
            if ms is None:
                return int(await self._redis.incrby(self._k(key), amount))
            # One transaction, so the counter never exists without its TTL; NX keeps the window's expiry.
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.incrby(self._k(key), amount)
                pipe.pexpire(self._k(key), ms, nx=True)
                value, _ = await pipe.execute()
        return int(value)

    async def hset(self, key: str, mapping: Mapping[str, bytes]) -> None:
        if mapping:
            fields: dict[Any, bytes] = dict(mapping)  # redis-py's key type is a wider invariant union
            with _redis_errors(key):
                await self._redis.hset(self._k(key), mapping=fields)

    async def hget(self, key: str, field: str) -> bytes | None:
        with _redis_errors(key):
            return cast("bytes | None", await self._redis.hget(self._k(key), field))

    async def hgetall(self, key: str) -> dict[str, bytes]:
        with _redis_errors(key):
            raw = cast("dict[bytes, bytes]", await self._redis.hgetall(self._k(key)))
        return {f.decode(): v for f, v in raw.items()}

    async def ping(self) -> bool:
        try:
            return bool(await self._redis.ping())
        except Exception:  # any failure means "not ready"
            return False

    async def close(self) -> None:
        await self._redis.aclose()


def make_cache(
    kind: Literal["memory", "redis"], url: str = "", prefix: str = "aitrading:", *, clock: Clock | None = None
) -> Cache:
    """Build the cache `kind` names (`StorageConfig.cache`); `url` and `prefix` apply to Redis."""
    if kind == "memory":
        return MemoryCache(clock)
    if kind == "redis":
        if not url:
            raise ConfigError("storage.redis_url is required when storage.cache is 'redis'")
        return RedisCache(url, prefix)
    raise ConfigError(f"unknown cache kind {kind!r}; use 'memory' or 'redis'")
