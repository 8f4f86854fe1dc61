"""The append-only, hash-chained audit log: every security event and trading decision, per tenant.

Each tenant has its own chain. Event `seq` runs 1, 2, … without gaps, and

    hash = sha256(prev_hash ‖ canonical(seq, ts, actor, kind, payload))

where `prev_hash` is the previous event's hash (64 zeros for the first), `‖` is string concatenation of the
hex digests and the canonical text, and `canonical` is the JSON object `{"actor", "kind", "payload", "seq",
"ts"}` with sorted keys, no whitespace, UTF-8, `ts` as `YYYY-MM-DDTHH:MM:SS.ffffffZ` and `payload` as the
stored canonical payload text (a string, so any byte change in it changes the hash).

`verify` walks the chain and names the first problem: `edited` (an event's hash does not match its
contents), `deleted` (a gap in seq), `reordered` (an event's own hash is intact but its prev_hash is not the
previous event's hash). With an archive directory it checks the archived (Parquet) events too and the chain
across the boundary; see `aitrading.storage.audit.archive`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import Any, Final

import msgspec
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from aitrading.common.clock import Clock
from aitrading.common.errors import BadInputError
from aitrading.storage.oltp import AuditEvent, Database

__all__ = [
    "GENESIS_HASH",
    "AuditLog",
    "AuditRecord",
    "ChainChecker",
    "VerifyResult",
    "canonical_event",
    "canonical_json",
    "event_hash",
    "format_ts",
    "lock_tenant_chain",
]

GENESIS_HASH: Final = "0" * 64
"""The `prev_hash` of a tenant's first event."""

MAX_KIND_LEN: Final = 64
MAX_ACTOR_LEN: Final = 200
_PAGE: Final = 1_000
_LOCK_NAMESPACE: Final = b"aitrading.audit:"


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)  # exact: money never passes through float
    if isinstance(value, datetime):
        return format_ts(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, set | frozenset):
        return sorted(value)
    raise TypeError(f"audit payload value of type {type(value).__name__} is not JSON serialisable")


_CANONICAL = json.JSONEncoder(
    sort_keys=True,
    separators=(",", ":"),
    ensure_ascii=False,
    allow_nan=False,
    default=_json_default,
)
"""`json.dumps` with these arguments builds this same encoder on every call; one is kept instead."""
_json_str = json.encoder.encode_basestring  # how that encoder writes a str (ensure_ascii=False)


_SORTED = msgspec.json.Encoder(order="sorted")
"""Writes what `_CANONICAL` writes for the values `_plain_dict` accepts (the same sorted keys, separators,
string escapes, integers, `Decimal` text, floats within a range), in a fraction of the time: an audit
event's payload is encoded on every order, report, deal and signal."""
_LEAVES: Final = frozenset({str, int, bool, type(None), Decimal})
"""Types the two encoders write alike (exact types: not subclasses; floats only within a range, below)."""
_LEAVES_AND_FLOATS: Final = _LEAVES | {float}
_FLOAT_LOW: Final = 1e-4
_FLOAT_HIGH: Final = 1e16
"""Floats the two encoders write alike: zero and magnitudes in [`_FLOAT_LOW`, `_FLOAT_HIGH`). There both
write the shortest round-trip digits positionally (`float.__repr__`, which `_CANONICAL` uses, switches to
exponent notation below 1e-4 and from 1e16 on; msgspec writes e.g. `1e16` and `0.00001` instead of `1e+16`
and `1e-05`). NaN and the infinities fall outside (and `_CANONICAL` refuses them)."""
_STR_KEYS: Final = frozenset({str})
_MAX_DEPTH: Final = 32  # deeper (or circular) values take `_CANONICAL`, which reports a circle as before


def canonical_json(value: Any) -> str:
    """Return `value` as canonical JSON: sorted keys, no whitespace, UTF-8 text, no NaN/Infinity."""
    if type(value) is dict and _plain_dict(value, 0):
        try:
            return _SORTED.encode(value).decode()
        except UnicodeEncodeError:  # a lone surrogate: `_CANONICAL` writes it (and the hash then refuses it)
            pass
    return _CANONICAL.encode(value)


def _plain_dict(value: dict[Any, Any], depth: int) -> bool:
    """Tell whether `value` holds only str keys and `_LEAVES`, `_same_float` floats, dicts, lists and tuples
    of them."""
    if value and not set(map(type, value)) <= _STR_KEYS:
        return False
    return _plain_items(value.values(), depth)


def _same_float(value: float) -> bool:
    """Tell whether msgspec writes `value` as `float.__repr__` does (see `_FLOAT_LOW`)."""
    return value == 0.0 or _FLOAT_LOW <= abs(value) < _FLOAT_HIGH


def _floats_alike(values: Iterable[Any]) -> bool:
    """Tell whether every float among `values` is `_same_float` (inline: a signal has many)."""
    for item in values:
        if type(item) is float and not (item == 0.0 or _FLOAT_LOW <= abs(item) < _FLOAT_HIGH):
            return False
    return True


def _plain_items(values: Collection[Any], depth: int) -> bool:
    kinds = set(map(type, values))
    if kinds <= _LEAVES:
        return True
    if kinds <= _LEAVES_AND_FLOATS:
        return _floats_alike(values)
    if depth >= _MAX_DEPTH:
        return False
    for item in values:
        kind = type(item)
        if kind in _LEAVES or (kind is float and _same_float(item)):
            continue
        if kind is dict:
            if not _plain_dict(item, depth + 1):
                return False
        elif kind is list or kind is tuple:
            if not _plain_items(item, depth + 1):
                return False
        else:  # another type, or a float whose text may differ
            return False
    return True


def format_ts(ts: datetime) -> str:
    """Return the canonical text of an aware timestamp: UTC, microseconds, `Z` suffix."""
    last, text = _LAST_TS[0]
    if last is not None and ts == last:  # the same instant (the events of one decision): formatted once
        return text
    if ts.tzinfo is None or ts.utcoffset() is None:
        raise ValueError(f"naive datetime {ts!r}: audit timestamps are aware UTC")
    text = ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    _LAST_TS[0] = (ts, text)
    return text


_LAST_TS: list[tuple[datetime | None, str]] = [(None, "")]
"""The last timestamp formatted and its text (one slot, replaced whole)."""


def canonical_event(seq: int, ts: datetime, actor: str, kind: str, payload: str) -> str:
    """Return the canonical text an event's hash covers (`payload` is its stored canonical JSON text)."""
    if type(seq) is int and type(actor) is str and type(kind) is str and type(payload) is str:
        # What `canonical_json` writes for this object (keys in sorted order, each str as its encoder
        # writes it), put together directly: this runs for every audit event.
        return (
            f'{{"actor":{_json_str(actor)},"kind":{_json_str(kind)},"payload":{_json_str(payload)},'
            f'"seq":{int.__repr__(seq)},"ts":{_json_str(format_ts(ts))}}}'
        )
    return canonical_json({"actor": actor, "kind": kind, "payload": payload, "seq": seq, "ts": format_ts(ts)})


def event_hash(prev_hash: str, seq: int, ts: datetime, actor: str, kind: str, payload: str) -> str:
    """Return sha256(prev_hash ‖ canonical_event(...)) as lower-case hex."""
    if (
        type(prev_hash) is str
        and type(seq) is int
        and type(actor) is str
        and type(kind) is str
        and type(payload) is str
    ):  # `canonical_event`'s text after the previous hash, in one string
        data = (
            f'{prev_hash}{{"actor":{_json_str(actor)},"kind":{_json_str(kind)},'
            f'"payload":{_json_str(payload)},"seq":{int.__repr__(seq)},"ts":{_json_str(format_ts(ts))}}}'
        )
        return hashlib.sha256(data.encode("utf-8")).hexdigest()
    data = prev_hash + canonical_event(seq, ts, actor, kind, payload)
    return hashlib.sha256(data.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One audit event as stored."""

    tenant_id: uuid.UUID
    seq: int
    ts: datetime
    actor: str
    kind: str
    payload: str
    prev_hash: str
    hash: str

    def payload_dict(self) -> dict[str, Any]:
        """Return the payload parsed from its canonical JSON."""
        parsed: dict[str, Any] = json.loads(self.payload)
        return parsed

    def recomputed_hash(self) -> str:
        """Return the hash this event's contents and prev_hash should have."""
        return event_hash(self.prev_hash, self.seq, self.ts, self.actor, self.kind, self.payload)


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """The outcome of verifying a tenant's chain.

    `problem` is None when `ok`, else one of `edited`, `deleted`, `reordered`, `archive_tampered` (a Parquet
    file's sha256 differs from its manifest) or `archive_mismatch` (a manifest disagrees with its rows).
    `first_bad_seq` is the seq where the chain first breaks (for `deleted`, the first missing seq).
    """

    ok: bool
    checked: int
    first_bad_seq: int | None = None
    problem: str | None = None
    detail: str = ""


class ChainChecker:
    """Walk events in seq order and remember the first break; the same walk serves table and archive."""

    def __init__(self) -> None:
        self.expected_seq = 1
        self.prev_hash = GENESIS_HASH
        self.checked = 0
        self.failure: VerifyResult | None = None

    def fail(self, seq: int | None, problem: str, detail: str) -> VerifyResult:
        """Record a failure (only the first one counts) and return it."""
        if self.failure is None:
            self.failure = VerifyResult(False, self.checked, seq, problem, detail)
        return self.failure

    def feed(self, records: Iterable[AuditRecord]) -> bool:
        """Check `records` (ascending seq); return False as soon as the chain breaks."""
        if self.failure is not None:
            return False
        for rec in records:
            if rec.seq != self.expected_seq:
                if rec.seq > self.expected_seq:
                    self.fail(self.expected_seq, "deleted", f"seq {self.expected_seq}..{rec.seq - 1} missing")
                else:
                    self.fail(rec.seq, "reordered", f"seq {rec.seq} appears after {self.expected_seq - 1}")
                return False
            if rec.recomputed_hash() != rec.hash:
                self.fail(rec.seq, "edited", f"seq {rec.seq}: hash does not match its contents")
                return False
            if rec.prev_hash != self.prev_hash:
                self.fail(rec.seq, "reordered", f"seq {rec.seq}: prev_hash is not the previous event's hash")
                return False
            self.prev_hash = rec.hash
            self.expected_seq += 1
            self.checked += 1
        return True

    def result(self) -> VerifyResult:
        """Return the failure, or success over everything checked."""
        return self.failure or VerifyResult(True, self.checked)


def _lock_key(tenant_id: uuid.UUID) -> int:
    digest = hashlib.sha256(_LOCK_NAMESPACE + tenant_id.bytes).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


async def lock_tenant_chain(session: AsyncSession, tenant_id: uuid.UUID) -> None:
    """Serialise writers of `tenant_id`'s chain until the transaction ends (PostgreSQL advisory lock).

    On SQLite the database has a single writer; `AuditLog` adds an in-process lock there.
    """
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _lock_key(tenant_id)})


def _record(row: AuditEvent) -> AuditRecord:
    return AuditRecord(
        tenant_id=row.tenant_id,
        seq=row.seq,
        ts=row.ts,
        actor=row.actor,
        kind=row.kind,
        payload=row.payload,
        prev_hash=row.prev_hash,
        hash=row.hash,
    )


def _validated(actor: str, kind: str, payload: Mapping[str, Any]) -> str:
    """Check an event's actor and kind and return its payload as canonical JSON; raise `BadInputError`."""
    if not kind or len(kind) > MAX_KIND_LEN:
        raise BadInputError(f"audit kind must be 1-{MAX_KIND_LEN} characters, got {kind!r}")
    if not actor or len(actor) > MAX_ACTOR_LEN:
        raise BadInputError(f"audit actor must be 1-{MAX_ACTOR_LEN} characters, got {actor!r}")
    try:
        return canonical_json(dict(payload))
    except (TypeError, ValueError) as exc:
        raise BadInputError(f"audit payload is not canonical JSON: {exc}") from exc


def _as_uuid(tenant_id: uuid.UUID | str) -> uuid.UUID:
    return tenant_id if isinstance(tenant_id, uuid.UUID) else uuid.UUID(tenant_id)


class AuditLog:
    """Append events to, read and verify the per-tenant audit chains in the OLTP database."""

    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock
        self._local_locks: dict[uuid.UUID, asyncio.Lock] = {}

    @property
    def db(self) -> Database:
        return self._db

    @property
    def clock(self) -> Clock:
        return self._clock

    def local_lock(self, tenant_id: uuid.UUID) -> asyncio.Lock:
        """Return the in-process lock for a tenant's chain (serialises this process's writers)."""
        lock = self._local_locks.get(tenant_id)
        if lock is None:
            lock = self._local_locks[tenant_id] = asyncio.Lock()
        return lock

    async def append(
        self, tenant_id: uuid.UUID | str, actor: str, kind: str, payload: Mapping[str, Any]
    ) -> AuditRecord:
        """Append one event to the tenant's chain and return it as stored."""
        tid = _as_uuid(tenant_id)
        payload_text = _validated(actor, kind, payload)
        async with self.local_lock(tid), self._db.session(tid) as session:
            return (await self._append(session, tid, [(actor, kind, payload_text)]))[0]

    async def append_in(
        self,
        session: AsyncSession,
        tenant_id: uuid.UUID | str,
        actor: str,
        kind: str,
        payload: Mapping[str, Any],
    ) -> AuditRecord:
        """Append one event inside the caller's transaction (`session`, scoped to the tenant).

        The event commits or rolls back with the caller's other writes. The caller must hold
        `local_lock(tenant_id)` from before the transaction's first audit write until it ends, so this
        process's writers of the chain stay serialised (PostgreSQL also takes the advisory lock here).
        """
        return (await self.append_many_in(session, tenant_id, [(actor, kind, payload)]))[0]

    async def append_many_in(
        self,
        session: AsyncSession,
        tenant_id: uuid.UUID | str,
        events: Sequence[tuple[str, str, Mapping[str, Any]]],
    ) -> list[AuditRecord]:
        """Append `events` (actor, kind, payload) with consecutive seqs inside the caller's transaction.

        One read of the chain's head and one multi-row insert, however many events; the same conditions
        as `append_in`. Every event is validated before anything is written.
        """
        tid = _as_uuid(tenant_id)
        if not self.local_lock(tid).locked():
            raise RuntimeError("append_in needs the tenant's local_lock held for the whole transaction")
        checked = [(actor, kind, _validated(actor, kind, payload)) for actor, kind, payload in events]
        return await self._append(session, tid, checked)

    async def _append(
        self, session: AsyncSession, tid: uuid.UUID, events: Sequence[tuple[str, str, str]]
    ) -> list[AuditRecord]:
        if not events:
            return []
        await lock_tenant_chain(session, tid)
        last = (
            await session.execute(
                sa.select(AuditEvent.seq, AuditEvent.hash)
                .where(AuditEvent.tenant_id == tid)
                .order_by(AuditEvent.seq.desc())
                .limit(1)
            )
        ).first()
        seq, prev_hash = (0, GENESIS_HASH) if last is None else (int(last[0]), str(last[1]))
        ts = self._clock.utcnow()
        rows: list[AuditEvent] = []
        for actor, kind, payload_text in events:
            seq += 1
            digest = event_hash(prev_hash, seq, ts, actor, kind, payload_text)
            rows.append(
                AuditEvent(
                    tenant_id=tid,
                    seq=seq,
                    ts=ts,
                    actor=actor,
                    kind=kind,
                    payload=payload_text,
                    prev_hash=prev_hash,
                    hash=digest,
                )
            )
            prev_hash = digest
        session.add_all(rows)
        await session.flush()
        return [_record(r) for r in rows]

    async def records(
        self, tenant_id: uuid.UUID | str, *, after_seq: int = 0, limit: int = _PAGE
    ) -> list[AuditRecord]:
        """Return up to `limit` events of the tenant with seq > `after_seq`, in seq order."""
        tid = _as_uuid(tenant_id)
        async with self._db.session(tid) as session:
            rows = await session.scalars(
                sa.select(AuditEvent)
                .where(AuditEvent.tenant_id == tid, AuditEvent.seq > after_seq)
                .order_by(AuditEvent.seq)
                .limit(limit)
            )
            return [_record(r) for r in rows]

    async def verify(self, tenant_id: uuid.UUID | str, archive_dir: Path | str | None = None) -> VerifyResult:
        """Verify the tenant's chain (and, with `archive_dir`, its archived part and the boundary)."""
        tid = _as_uuid(tenant_id)
        checker = ChainChecker()
        if archive_dir is not None:
            from aitrading.storage.audit.archive import verify_archives

            if not await verify_archives(checker, tid, Path(archive_dir)):
                return checker.result()
        after = 0
        while True:
            page = await self.records(tid, after_seq=after)
            if not page:
                break
            if not checker.feed(page):
                break
            after = page[-1].seq
        return checker.result()
