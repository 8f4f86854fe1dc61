"""A short-lived cache of verified credentials in front of the injected authenticator.

Verifying a bearer JWT costs more than everything else the gateway does per request (profiled: base64,
JSON and HMAC/signature checks in PyJWT), and a client sends the same token thousands of times. So the
gateway remembers `credential → Principal` after one successful verification:

- a JWT is kept until its own `exp` (read from the already verified token) or `ttl_s`, whichever is first,
  so a cached token is never accepted after it expired;
- any other credential (an API key) is kept for `ttl_s`.

`ttl_s` (default 1 s, `gateway.auth_cache_ttl_s`) bounds how long a revoked token or key (identity's
denylist, checked by the authenticator) still passes here; `ttl_s=0` turns the cache off. One second
keeps nearly all of the saving for a client sending many requests a second.

Only successes are cached; a failure always goes to the authenticator (which throttles and audits it).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Awaitable, Callable

from starlette.requests import Request

from aitrading.common.auth import Principal
from aitrading.common.clock import Clock

__all__ = ["CachedAuthenticator"]

_NS = 1_000_000_000
_CREDENTIAL_HEADERS = (b"authorization", b"x-api-key")


def _jwt_exp(header: bytes) -> int | None:
    """Return `exp` of a bearer JWT in `header` (already verified by the authenticator), else None."""
    scheme, _, token = header.partition(b" ")
    if scheme.lower() != b"bearer":
        return None
    parts = token.strip().split(b".")
    if len(parts) != 3:
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + b"=" * (-len(parts[1]) % 4)))
        exp = payload["exp"]
    except (ValueError, KeyError, TypeError, binascii.Error):
        return None
    return exp if isinstance(exp, int) else None


class CachedAuthenticator:
    """Wraps `authenticate` with a cache keyed by the request's credential headers."""

    def __init__(
        self,
        authenticate: Callable[[Request], Awaitable[Principal]],
        clock: Clock,
        *,
        ttl_s: float = 1.0,
        max_entries: int = 100_000,
    ) -> None:
        self._authenticate = authenticate
        self._clock = clock
        self._ttl_ns = int(ttl_s * _NS)
        self._max = max_entries
        self._cache: dict[tuple[bytes, ...], tuple[Principal, int]] = {}

    async def __call__(self, request: Request) -> Principal:
        if self._ttl_ns <= 0:
            return await self._authenticate(request)
        key = tuple(v for k, v in request.scope["headers"] if k in _CREDENTIAL_HEADERS)
        now = self._clock.now_ns()
        hit = self._cache.get(key) if key else None
        if hit is not None:
            if hit[1] > now:
                return hit[0]
            del self._cache[key]
        principal = await self._authenticate(request)
        if key:
            until = now + self._ttl_ns
            for header in key:
                exp = _jwt_exp(header)
                if exp is not None:
                    until = min(until, exp * _NS)
            if len(self._cache) >= self._max:
                self._cache.clear()  # simplest bound: the next request of each client verifies again
            self._cache[key] = (principal, until)
        return principal
