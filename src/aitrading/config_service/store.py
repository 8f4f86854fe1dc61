"""Hierarchical config in the OLTP database: overrides per scope, versions, audit, change announcements.

A write is one transaction: check the expected version (optimistic concurrency), store the new override,
append a `config_versions` row (old, new, diff) and the audit event to the owning tenant's hash chain, so a
change is never stored without its audit record or the other way round. Global entries and their audit
events belong to the platform tenant (slug `platform`, created on start): global changes are in the
platform's chain. After the commit the change is announced on `cfg.changed.<tenant>` (tenant and user
scopes) or `cfg.changed.global`; a failed announcement is logged, and caches catch up at their TTL.

Writers of one tenant's chain are serialised: in this process by the audit log's lock of that tenant, across
processes by the chain's transaction lock on PostgreSQL (`lock_tenant_chain`).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import sqlalchemy as sa
import structlog
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from aitrading.common.bus import Bus
from aitrading.common.clock import Clock
from aitrading.common.errors import BadInputError, NotFoundError
from aitrading.config_service.messages import ConfigChanged, changed_subject
from aitrading.config_service.namespaces import NAMESPACES, Namespace, merge, validate_override
from aitrading.storage.audit.chain import (
    GENESIS_HASH,
    AuditLog,
    canonical_json,
    event_hash,
    lock_tenant_chain,
)
from aitrading.storage.oltp import AuditEvent, Database, ensure_tenant
from aitrading.storage.oltp.models_config import ConfigEntry, ConfigVersion

__all__ = [
    "PLATFORM_TENANT_SLUG",
    "ConfigStore",
    "EntryView",
    "Owner",
    "VersionConflictError",
    "VersionView",
    "config_diff",
]

PLATFORM_TENANT_SLUG: Final = "platform"
"""The tenant that owns global config and the audit chain of global changes."""

_log = structlog.get_logger("config")


class VersionConflictError(BadInputError):
    """The entry changed since the caller read it (If-Match does not match the current version)."""

    def __init__(self, message: str, current: int) -> None:
        super().__init__(message)
        self.current = current


@dataclass(frozen=True, slots=True)
class Owner:
    """Whose override: the global one, a tenant's, or a user's within a tenant."""

    scope: str
    tenant: uuid.UUID | None = None
    user: str = ""

    def __post_init__(self) -> None:
        if self.scope not in ("global", "tenant", "user"):
            raise BadInputError(f"unknown scope {self.scope!r}; use global, tenant or user")
        if self.scope != "global" and self.tenant is None:
            raise BadInputError(f"the {self.scope} scope needs a tenant")
        if (self.scope == "user") != bool(self.user):
            raise BadInputError("a user is named for the user scope, and only there")

    @property
    def tenant_text(self) -> str | None:
        return None if self.scope == "global" else str(self.tenant)


@dataclass(frozen=True, slots=True)
class EntryView:
    """One scope's override of a namespace as the API shows it (`value` None: not set, inherits)."""

    owner: Owner
    namespace: str
    version: int
    value: dict[str, Any] | None
    updated_at: datetime | None
    updated_by: str | None
    changed: bool = True


@dataclass(frozen=True, slots=True)
class VersionView:
    """One change of an entry."""

    owner: Owner
    namespace: str
    version: int
    action: str
    ts: datetime
    actor: str
    old: dict[str, Any] | None
    new: dict[str, Any] | None
    diff: list[dict[str, Any]]


def config_diff(old: dict[str, Any] | None, new: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Return the field changes from `old` to `new` as JSON-patch-like operations, sorted by path."""
    before, after = old or {}, new or {}
    ops: list[dict[str, Any]] = []
    for key in sorted(before.keys() | after.keys()):
        if key not in after:
            ops.append({"op": "remove", "path": f"/{key}", "old": before[key]})
        elif key not in before:
            ops.append({"op": "add", "path": f"/{key}", "new": after[key]})
        elif before[key] != after[key]:
            ops.append({"op": "replace", "path": f"/{key}", "old": before[key], "new": after[key]})
    return ops


def _loads(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    value: dict[str, Any] = json.loads(text)
    return value


class ConfigStore:
    """Reads and versioned, audited writes of config overrides."""

    def __init__(
        self, db: Database, clock: Clock, *, bus: Bus | None = None, audit: AuditLog | None = None
    ) -> None:
        self._db = db
        self._clock = clock
        self._bus = bus
        self._audit = audit or AuditLog(db, clock)
        self._platform: uuid.UUID | None = None

    @property
    def platform_tenant(self) -> uuid.UUID:
        """The id of the platform tenant (after `start`)."""
        if self._platform is None:
            raise RuntimeError("ConfigStore.start() has not run")
        return self._platform

    async def start(self) -> None:
        """Make sure the platform tenant exists and remember its id."""
        async with self._db.session() as session:
            tenant = await ensure_tenant(session, PLATFORM_TENANT_SLUG, "Platform (global config and audit)")
            self._platform = tenant.id

    def _tenant_of(self, owner: Owner) -> uuid.UUID:
        if owner.scope == "global":
            return self.platform_tenant
        assert owner.tenant is not None
        return owner.tenant

    @staticmethod
    def _where(
        owner: Owner, tid: uuid.UUID, namespace: str | None = None, model: Any = ConfigEntry
    ) -> list[Any]:
        clauses = [model.tenant_id == tid, model.scope == owner.scope, model.user_id == owner.user]
        if namespace is not None:
            clauses.append(model.namespace == namespace)
        return clauses

    # -- reads ------------------------------------------------------------------------------------------

    async def get(self, owner: Owner, ns: Namespace) -> EntryView:
        """Return the override `owner` holds for `ns` (version 0 and no value if never set)."""
        tid = self._tenant_of(owner)
        async with self._db.session(tid) as session:
            row = await session.scalar(sa.select(ConfigEntry).where(*self._where(owner, tid, ns.name)))
        if row is None:
            return EntryView(owner, ns.name, 0, None, None, None)
        return EntryView(owner, ns.name, row.version, _loads(row.value), row.updated_at, row.updated_by)

    async def effective(self, tenant: uuid.UUID | None, user: str | None) -> dict[str, Any]:
        """Return every namespace's effective values for `user` in `tenant`, with sources and versions."""
        async with self._db.session(self.platform_tenant) as session:
            rows = list(
                await session.scalars(
                    sa.select(ConfigEntry).where(
                        ConfigEntry.tenant_id == self.platform_tenant, ConfigEntry.scope == "global"
                    )
                )
            )
        if tenant is not None:
            mine = sa.or_(
                ConfigEntry.scope == "tenant",
                sa.and_(ConfigEntry.scope == "user", ConfigEntry.user_id == (user or "")),
            )
            async with self._db.session(tenant) as session:
                rows += list(
                    await session.scalars(sa.select(ConfigEntry).where(ConfigEntry.tenant_id == tenant, mine))
                )
        by_key = {(r.namespace, r.scope): r for r in rows if r.scope != "user" or user}
        out: dict[str, Any] = {}
        for name, ns in NAMESPACES.items():
            layers: list[tuple[str, dict[str, Any]]] = []
            versions: dict[str, int] = {}
            for scope in ns.scopes:
                row = by_key.get((name, scope))
                versions[scope] = 0 if row is None else row.version
                value = None if row is None else _loads(row.value)
                if value:
                    layers.append((scope, value))
            values, sources = merge(ns, layers)
            out[name] = {"values": values, "sources": sources, "versions": versions}
        return out

    async def history(
        self,
        owner: Owner,
        namespace: str | None = None,
        *,
        limit: int = 100,
        before_version: int | None = None,
    ) -> list[VersionView]:
        """Return `owner`'s changes, newest first (of one namespace, or all)."""
        tid = self._tenant_of(owner)
        clauses = self._where(owner, tid, namespace, ConfigVersion)
        if before_version is not None:
            clauses.append(ConfigVersion.version < before_version)
        async with self._db.session(tid) as session:
            rows = await session.scalars(
                sa.select(ConfigVersion)
                .where(*clauses)
                .order_by(ConfigVersion.ts.desc(), ConfigVersion.namespace, ConfigVersion.version.desc())
                .limit(limit)
            )
            return [
                VersionView(
                    owner,
                    r.namespace,
                    r.version,
                    r.action,
                    r.ts,
                    r.actor,
                    _loads(r.old_value),
                    _loads(r.new_value),
                    json.loads(r.diff),
                )
                for r in rows
            ]

    # -- writes -----------------------------------------------------------------------------------------

    async def put(self, owner: Owner, ns: Namespace, value: Any, *, expected: int, actor: str) -> EntryView:
        """Set `owner`'s override of `ns` if its version is still `expected` (0: never set)."""
        if owner.scope not in ns.scopes:
            raise BadInputError(
                f"{ns.name} config cannot be set at {owner.scope} scope; only at {', '.join(ns.scopes)}"
            )
        return await self._write(owner, ns, validate_override(ns, value), expected=expected, actor=actor)

    async def delete(self, owner: Owner, ns: Namespace, *, expected: int, actor: str) -> EntryView:
        """Remove `owner`'s override of `ns` (its fields inherit again) if its version is still `expected`."""
        return await self._write(owner, ns, None, expected=expected, actor=actor)

    async def _write(
        self, owner: Owner, ns: Namespace, new: dict[str, Any] | None, *, expected: int, actor: str
    ) -> EntryView:
        tid = self._tenant_of(owner)
        try:
            async with self._audit.local_lock(tid), self._db.session(tid) as session:
                await lock_tenant_chain(session, tid)
                view = await self._apply(session, owner, ns, new, tid, expected=expected, actor=actor)
        except IntegrityError as exc:
            if "foreign key" in str(exc.orig).lower():
                raise NotFoundError(f"tenant {owner.tenant} does not exist") from None
            raise VersionConflictError(f"{ns.name} changed concurrently; read it again", -1) from None
        if view.changed:
            await self._announce(view, actor)
        return view

    async def _apply(
        self,
        session: AsyncSession,
        owner: Owner,
        ns: Namespace,
        new: dict[str, Any] | None,
        tid: uuid.UUID,
        *,
        expected: int,
        actor: str,
    ) -> EntryView:
        row = await session.scalar(sa.select(ConfigEntry).where(*self._where(owner, tid, ns.name)))
        current = 0 if row is None else row.version
        if expected != current:
            raise VersionConflictError(
                f"{ns.name} at {owner.scope} scope is at version {current}, not {expected}; read it again",
                current,
            )
        old = None if row is None else _loads(row.value)
        if old is None and new is None:
            raise NotFoundError(f"{ns.name} is not set at {owner.scope} scope")
        if old == new:  # nothing changes: no version, no audit event, no announcement
            assert row is not None
            return EntryView(owner, ns.name, current, old, row.updated_at, row.updated_by, changed=False)
        now = self._clock.utcnow()
        version = current + 1
        text = None if new is None else canonical_json(new)
        if row is None:
            session.add(
                ConfigEntry(
                    tenant_id=tid,
                    scope=owner.scope,
                    user_id=owner.user,
                    namespace=ns.name,
                    value=text,
                    version=version,
                    updated_at=now,
                    updated_by=actor,
                )
            )
        else:
            done = await session.execute(
                sa.update(ConfigEntry)
                .where(ConfigEntry.id == row.id, ConfigEntry.version == current)
                .values(value=text, version=version, updated_at=now, updated_by=actor)
            )
            if done.rowcount != 1:  # type: ignore[attr-defined]  # CursorResult of an UPDATE
                raise VersionConflictError(f"{ns.name} changed concurrently; read it again", current)
        diff = config_diff(old, new)
        action = "delete" if new is None else "put"
        session.add(
            ConfigVersion(
                tenant_id=tid,
                scope=owner.scope,
                user_id=owner.user,
                namespace=ns.name,
                version=version,
                action=action,
                ts=now,
                actor=actor,
                old_value=None if old is None else canonical_json(old),
                new_value=text,
                diff=canonical_json(diff),
            )
        )
        payload = {
            "scope": owner.scope,
            "tenant": owner.tenant_text,
            "user": owner.user or None,
            "namespace": ns.name,
            "version": version,
            "action": action,
            "old": old,
            "new": new,
            "diff": diff,
        }
        await self._append_audit(session, tid, actor, f"config.{action}", payload, now)
        await session.flush()
        return EntryView(owner, ns.name, version, new, now, actor)

    async def _append_audit(
        self,
        session: AsyncSession,
        tid: uuid.UUID,
        actor: str,
        kind: str,
        payload: dict[str, Any],
        ts: datetime,
    ) -> None:
        # The same record `AuditLog.append` writes, inside this transaction (the chain lock is held).
        last = (
            await session.execute(
                sa.select(AuditEvent.seq, AuditEvent.hash)
                .where(AuditEvent.tenant_id == tid)
                .order_by(AuditEvent.seq.desc())
                .limit(1)
            )
        ).first()
        seq, prev = (1, GENESIS_HASH) if last is None else (int(last[0]) + 1, str(last[1]))
        text = canonical_json(payload)
        session.add(
            AuditEvent(
                tenant_id=tid,
                seq=seq,
                ts=ts,
                actor=actor,
                kind=kind,
                payload=text,
                prev_hash=prev,
                hash=event_hash(prev, seq, ts, actor, kind, text),
            )
        )

    async def _announce(self, view: EntryView, actor: str) -> None:
        if self._bus is None:
            return
        msg = ConfigChanged(
            scope=view.owner.scope,
            namespace=view.namespace,
            version=view.version,
            tenant=view.owner.tenant_text,
            user=view.owner.user or None,
            actor=actor,
            ts_ns=self._clock.now_ns(),
            deleted=view.value is None,
        )
        try:
            await self._bus.publish(changed_subject(view.owner.tenant_text), msg)
        except Exception as exc:  # stored and audited already; caches catch up at their TTL
            _log.warning("config_change_unannounced", namespace=view.namespace, error=repr(exc))
