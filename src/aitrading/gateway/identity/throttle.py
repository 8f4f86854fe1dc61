"""Login throttling per account and per client IP, in the platform cache (memory or Redis).

Failures count in a fixed window (15 minutes by default). Once an account has `account_after` failures in
the window, or an IP `ip_after`, each further attempt must wait an exponentially growing delay after the
last failure (1 s, 2 s, 4 s … capped), answered with 429 and `Retry-After`. Accounts are keyed by tenant
and e-mail whether or not the user exists, so throttling reveals nothing about which accounts exist; the
durable lockout of real accounts lives in the database (`user_login_states`), and `lock` mirrors it here for
unknown accounts so they answer exactly like locked real ones.
"""

from __future__ import annotations

import hashlib

from aitrading.common.clock import Clock
from aitrading.storage.cache import Cache

__all__ = ["LoginThrottle", "account_key"]

_NS = 1_000_000_000


def account_key(tenant: str, email: str) -> str:
    """Return the throttle key of an account (a digest: bounded length, no separators from user input)."""
    return hashlib.sha256(f"{tenant}\x00{email.strip().lower()}".encode()).hexdigest()[:32]


class LoginThrottle:
    """Count failed sign-ins and say how long the next attempt must wait."""

    def __init__(
        self,
        cache: Cache,
        clock: Clock,
        *,
        window_s: int,
        account_after: int,
        ip_after: int,
        max_delay_s: int,
    ) -> None:
        self._cache = cache
        self._clock = clock
        self._window = window_s
        self._after = {"acct": account_after, "ip": ip_after}
        self._max_delay = max_delay_s

    async def retry_after(self, account: str, ip: str | None) -> int:
        """Return the seconds the caller must wait before this attempt (0: go ahead)."""
        wait = await self._locked_for(account)
        for scope, ident in (("acct", account), ("ip", ip)):
            if ident:
                wait = max(wait, await self._delay(scope, ident))
        return wait

    async def failed(self, account: str, ip: str | None) -> int:
        """Record a failure; return the account's failure count in the window."""
        now = str(self._clock.now_ns()).encode()
        count = 0
        for scope, ident in (("acct", account), ("ip", ip)):
            if not ident:
                continue
            n = await self._cache.incr(f"idn:lf:n:{scope}:{ident}", 1, ttl=self._window)
            await self._cache.set(f"idn:lf:t:{scope}:{ident}", now, ttl=self._window)
            if scope == "acct":
                count = n
        return count

    async def reset(self, account: str) -> None:
        """Forget an account's failures and lock (successful sign-in, admin unlock)."""
        for key in (f"idn:lf:n:acct:{account}", f"idn:lf:t:acct:{account}", f"idn:lock:{account}"):
            await self._cache.delete(key)

    async def lock(self, account: str, seconds: int) -> None:
        """Refuse the account for `seconds` (mirrors the database lockout; used for unknown accounts)."""
        until = self._clock.now_ns() + seconds * _NS
        await self._cache.set(f"idn:lock:{account}", str(until).encode(), ttl=seconds)

    async def _locked_for(self, account: str) -> int:
        raw = await self._cache.get(f"idn:lock:{account}")
        if raw is None:
            return 0
        remaining: int = int(raw) - self._clock.now_ns()
        return max(0, -(-remaining // _NS))

    async def _delay(self, scope: str, ident: str) -> int:
        raw = await self._cache.get(f"idn:lf:n:{scope}:{ident}")
        count = int(raw) if raw is not None else 0
        if count < self._after[scope]:
            return 0
        last = await self._cache.get(f"idn:lf:t:{scope}:{ident}")
        if last is None:
            return 0
        delay_ns = min(1 << min(count - self._after[scope], 30), self._max_delay) * _NS
        remaining = int(last) + delay_ns - self._clock.now_ns()
        return max(0, -(-remaining // _NS))
