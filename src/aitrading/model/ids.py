"""Typed identifiers, client order ids that fit MT5's `comment`, and the bus subjects built from them.

Tenant, account and strategy ids appear in subjects that scope a tenant's data, so they must already be
subject-safe (`[A-Za-z0-9_-]`, at most 64 characters): mapping an unsafe id onto a safe token is lossy, and
two tenants must never share a subject. Feeds and symbols are named by brokers (`EURUSD.r`, `US30#`), so
their subject tokens go through `subjects.token`; the messages themselves carry the exact names.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import NewType

from aitrading.common.bus.subjects import token
from aitrading.common.clock import Clock
from aitrading.model.market import Timeframe

__all__ = [
    "MT5_COMMENT_MAX",
    "AccountId",
    "ClientOrderId",
    "ClientOrderIdGenerator",
    "StrategyId",
    "TenantId",
    "account_id",
    "account_snapshot_subject",
    "agent_presence_subject",
    "bar_pattern",
    "bar_subject",
    "client_order_id",
    "client_order_id_time_ms",
    "order_command_subject",
    "order_event_pattern",
    "order_event_subject",
    "order_report_subject",
    "signal_subject",
    "strategy_id",
    "tenant_id",
    "tick_pattern",
    "tick_subject",
]

TenantId = NewType("TenantId", str)
AccountId = NewType("AccountId", str)
StrategyId = NewType("StrategyId", str)
ClientOrderId = NewType("ClientOrderId", str)

MT5_COMMENT_MAX = 31
"""MT5 keeps at most 31 characters of an order's comment; a client order id must fit in it."""

_SCOPED = re.compile(r"[A-Za-z0-9_-]{1,64}")
_CLIENT_ID = re.compile(r"[A-Za-z0-9_.:-]{1,31}")
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_TIME_CHARS = 10  # 48-bit millisecond timestamp
_RANDOM_CHARS = 16  # 80 random bits
_ULID_CHARS = _TIME_CHARS + _RANDOM_CHARS
_RANDOM_MAX = 2**80 - 1
_PREFIX = re.compile(r"[A-Z0-9]{0,5}")


def _scoped(value: str, what: str) -> str:
    if not _SCOPED.fullmatch(value):
        raise ValueError(f"{what} {value!r} must be 1-64 characters of A-Z, a-z, 0-9, '_' or '-'")
    return value


def tenant_id(value: str) -> TenantId:
    """Return `value` as a `TenantId`; raise `ValueError` if it is not subject-safe."""
    return TenantId(_scoped(value, "tenant id"))


def account_id(value: str) -> AccountId:
    """Return `value` as an `AccountId`; raise `ValueError` if it is not subject-safe."""
    return AccountId(_scoped(value, "account id"))


def strategy_id(value: str) -> StrategyId:
    """Return `value` as a `StrategyId`; raise `ValueError` if it is not subject-safe."""
    return StrategyId(_scoped(value, "strategy id"))


def client_order_id(value: str) -> ClientOrderId:
    """Return `value` as a `ClientOrderId`; raise `ValueError` unless it is 1-31 plain characters."""
    if not _CLIENT_ID.fullmatch(value):
        raise ValueError(
            f"client order id {value!r} must be 1-{MT5_COMMENT_MAX} characters of A-Z, a-z, 0-9, '_.:-'"
        )
    return ClientOrderId(value)


_CROCKFORD_PAIRS = tuple(a + b for a in _CROCKFORD for b in _CROCKFORD)  # 10 bits → 2 digits
_PAIR_SHIFTS = tuple(range(5 * _ULID_CHARS - 10, -1, -10))
_ULID_MASK = 2 ** (5 * _ULID_CHARS) - 1


def _ulid_body(ms: int, random: int) -> str:
    """Return the 26 Crockford base32 digits of the low 130 bits of `ms` ‖ `random` (80 bits).

    The same digits as the time in 10 and the random part in 16 digits of five bits each, looked up two
    digits at a time (13 lookups, not 26 divisions: an id is made for every order).
    """
    n = ((ms << (5 * _RANDOM_CHARS)) | random) & _ULID_MASK
    return "".join([_CROCKFORD_PAIRS[(n >> shift) & 1023] for shift in _PAIR_SHIFTS])


class ClientOrderIdGenerator:
    """Make client order ids: `prefix` + a 26-character ULID (Crockford base32), at most 31 characters.

    Ids of one generator sort in creation order, also when the clock stands still or steps back (the
    random part is then incremented, as monotonic ULIDs do). Across processes 80 random bits keep them
    unique and the millisecond time keeps them roughly sorted. The time comes from the injected clock.
    """

    def __init__(
        self,
        clock: Clock,
        *,
        prefix: str = "AI",
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        if not _PREFIX.fullmatch(prefix):
            raise ValueError(f"prefix {prefix!r} must be 0-5 characters of A-Z or 0-9")
        self._clock = clock
        self._prefix = prefix
        self._random_bytes = random_bytes
        self._last_ms = -1
        self._last_random = 0

    def __call__(self) -> ClientOrderId:
        """Return the next id."""
        ms = self._clock.now_ms()
        if ms > self._last_ms:
            self._last_ms = ms
            self._last_random = int.from_bytes(self._random_bytes(10), "big")
        elif self._last_random < _RANDOM_MAX:
            self._last_random += 1
        else:  # the random part ran out within one millisecond: borrow the next one
            self._last_ms += 1
            self._last_random = 0
        return ClientOrderId(self._prefix + _ulid_body(self._last_ms, self._last_random))


def client_order_id_time_ms(value: str) -> int:
    """Return the creation time (epoch ms) of an id made by `ClientOrderIdGenerator`."""
    body = value[-_ULID_CHARS:]
    if len(body) != _ULID_CHARS or any(c not in _CROCKFORD for c in body):
        raise ValueError(f"{value!r} is not a generated client order id")
    ms = 0
    for c in body[:_TIME_CHARS]:
        ms = ms * 32 + _CROCKFORD.index(c)
    return ms


# --- subjects --------------------------------------------------------------------------------------------


def _timeframe_name(timeframe: Timeframe | int | str) -> str:
    if isinstance(timeframe, str):
        return Timeframe.parse(timeframe).name
    return Timeframe(timeframe).name


def _market_token(value: str, what: str) -> str:
    if not value:
        raise ValueError(f"{what} must not be empty")
    return token(value)


def order_command_subject(tenant: str, account: str) -> str:
    """`ord.cmd.<tenant>.<account>`: order commands for one trading account."""
    return f"ord.cmd.{_scoped(tenant, 'tenant id')}.{_scoped(account, 'account id')}"


def order_report_subject(tenant: str, account: str) -> str:
    """`ord.rpt.<tenant>.<account>`: what the account's agent reports of the commands it executed."""
    return f"ord.rpt.{_scoped(tenant, 'tenant id')}.{_scoped(account, 'account id')}"


def account_snapshot_subject(tenant: str, account: str) -> str:
    """`acct.snap.<tenant>.<account>`: the terminal's view of one account, for reconciliation."""
    return f"acct.snap.{_scoped(tenant, 'tenant id')}.{_scoped(account, 'account id')}"


def agent_presence_subject(tenant: str) -> str:
    """`agent.presence.<tenant>`: a tenant's agents coming online or going offline."""
    return f"agent.presence.{_scoped(tenant, 'tenant id')}"


def order_event_subject(tenant: str, account: str) -> str:
    """`ord.evt.<tenant>.<account>`: order, position and account events of one trading account."""
    return f"ord.evt.{_scoped(tenant, 'tenant id')}.{_scoped(account, 'account id')}"


def order_event_pattern(tenant: str | None = None) -> str:
    """Pattern for the order events of one tenant's accounts, or of every tenant's."""
    return f"ord.evt.{_scoped(tenant, 'tenant id')}.*" if tenant is not None else "ord.evt.*.*"


def signal_subject(tenant: str, strategy: str) -> str:
    """`sig.<tenant>.<strategy>`: signals of one strategy."""
    return f"sig.{_scoped(tenant, 'tenant id')}.{_scoped(strategy, 'strategy id')}"


def tick_subject(feed: str, symbol: str) -> str:
    """`md.tick.<feed>.<symbol>`: ticks of one symbol from one feed (broker server)."""
    return f"md.tick.{_market_token(feed, 'feed')}.{_market_token(symbol, 'symbol')}"


def tick_pattern(feed: str | None = None) -> str:
    """Pattern for the ticks of one feed, or of every feed."""
    return f"md.tick.{_market_token(feed, 'feed')}.*" if feed is not None else "md.tick.*.*"


def bar_subject(feed: str, symbol: str, timeframe: Timeframe | int | str) -> str:
    """`md.bar.<feed>.<symbol>.<tf>` with the timeframe's name (`M1`, `H1`, …)."""
    return (
        f"md.bar.{_market_token(feed, 'feed')}.{_market_token(symbol, 'symbol')}.{_timeframe_name(timeframe)}"
    )


def bar_pattern(feed: str | None = None, timeframe: Timeframe | int | str | None = None) -> str:
    """Pattern for closed bars, narrowed to a feed and/or a timeframe."""
    f = _market_token(feed, "feed") if feed is not None else "*"
    tf = _timeframe_name(timeframe) if timeframe is not None else "*"
    return f"md.bar.{f}.*.{tf}"
