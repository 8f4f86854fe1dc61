"""Cold archive of the audit log: the oldest events go to Parquet (ZSTD) files with a JSON manifest.

One export writes `audit-<tenant>-<first seq>-<last seq>.parquet` and `.json` beside it, then deletes those
events from the table in the same transaction that read them (under the tenant's chain lock). The manifest
records the tenant, first/last seq, the first event's prev_hash, the last event's hash, the row count and the
sha256 of the Parquet file, so `AuditLog.verify(tenant, archive_dir)` can check the archived events re-hash
correctly, the files are the ones written, and the first live event chains to the last archived one.

The newest event always stays in the table, so appends keep numbering the chain after an export.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import pyarrow as pa  # type: ignore[import-untyped]  # pyarrow ships no type information
import pyarrow.parquet as pq  # type: ignore[import-untyped]  # same
import sqlalchemy as sa

from aitrading.common.errors import BadInputError
from aitrading.storage.audit.chain import AuditLog, AuditRecord, ChainChecker, lock_tenant_chain
from aitrading.storage.oltp import AuditEvent

__all__ = ["MANIFEST_VERSION", "ArchiveManifest", "export_older_than", "read_manifests", "verify_archives"]

MANIFEST_VERSION: Final = 1
_CHUNK: Final = 64 * 1024

_SCHEMA: Final = pa.schema(
    [
        ("seq", pa.int64()),
        ("ts", pa.timestamp("us", tz="UTC")),
        ("actor", pa.string()),
        ("kind", pa.string()),
        ("payload", pa.string()),
        ("prev_hash", pa.string()),
        ("hash", pa.string()),
    ]
)


@dataclass(frozen=True, slots=True)
class ArchiveManifest:
    """What one archive file holds; written as JSON beside the Parquet file."""

    tenant_id: str
    first_seq: int
    last_seq: int
    first_prev_hash: str
    last_hash: str
    row_count: int
    parquet_file: str
    parquet_sha256: str
    created_at: str
    version: int = MANIFEST_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> ArchiveManifest:
        data: dict[str, Any] = json.loads(text)
        return cls(
            tenant_id=str(data["tenant_id"]),
            first_seq=int(data["first_seq"]),
            last_seq=int(data["last_seq"]),
            first_prev_hash=str(data["first_prev_hash"]),
            last_hash=str(data["last_hash"]),
            row_count=int(data["row_count"]),
            parquet_file=str(data["parquet_file"]),
            parquet_sha256=str(data["parquet_sha256"]),
            created_at=str(data["created_at"]),
            version=int(data.get("version", MANIFEST_VERSION)),
        )


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _write_durably(path: Path, write: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    with tmp.open("rb") as fh:
        os.fsync(fh.fileno())
    tmp.replace(path)


def _write_archive(
    records: list[AuditRecord], directory: Path, tenant_id: uuid.UUID, now: datetime
) -> ArchiveManifest:
    directory.mkdir(parents=True, exist_ok=True)
    stem = f"audit-{tenant_id}-{records[0].seq:012d}-{records[-1].seq:012d}"
    parquet_path = directory / f"{stem}.parquet"
    table = pa.table(
        {
            "seq": [r.seq for r in records],
            "ts": [r.ts.astimezone(UTC) for r in records],
            "actor": [r.actor for r in records],
            "kind": [r.kind for r in records],
            "payload": [r.payload for r in records],
            "prev_hash": [r.prev_hash for r in records],
            "hash": [r.hash for r in records],
        },
        schema=_SCHEMA,
    )
    _write_durably(parquet_path, lambda p: pq.write_table(table, p, compression="zstd"))
    manifest = ArchiveManifest(
        tenant_id=str(tenant_id),
        first_seq=records[0].seq,
        last_seq=records[-1].seq,
        first_prev_hash=records[0].prev_hash,
        last_hash=records[-1].hash,
        row_count=len(records),
        parquet_file=parquet_path.name,
        parquet_sha256=_sha256_file(parquet_path),
        created_at=now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
    )
    _write_durably(directory / f"{stem}.json", lambda p: p.write_text(manifest.to_json(), encoding="utf-8"))
    return manifest


def _remove_archive(directory: Path, manifest: ArchiveManifest) -> None:
    for name in (manifest.parquet_file, Path(manifest.parquet_file).with_suffix(".json").name):
        with contextlib.suppress(FileNotFoundError):
            (directory / name).unlink()


async def export_older_than(
    log: AuditLog, tenant_id: uuid.UUID | str, days: float, directory: Path | str
) -> ArchiveManifest | None:
    """Move the tenant's events older than `days` to a Parquet archive in `directory`; return its manifest.

    Returns None when nothing qualifies. The newest event is never exported (it anchors the live chain).
    """
    if days < 0:
        raise BadInputError(f"days must be >= 0, got {days}")
    tid = tenant_id if isinstance(tenant_id, uuid.UUID) else uuid.UUID(tenant_id)
    out = Path(directory)
    now = log.clock.utcnow()
    cutoff = now - timedelta(days=days)
    async with log.local_lock(tid), log.db.session(tid) as session:
        await lock_tenant_chain(session, tid)
        max_seq = await session.scalar(
            sa.select(sa.func.max(AuditEvent.seq)).where(AuditEvent.tenant_id == tid)
        )
        old_seq = await session.scalar(
            sa.select(sa.func.max(AuditEvent.seq)).where(AuditEvent.tenant_id == tid, AuditEvent.ts < cutoff)
        )
        if max_seq is None or old_seq is None:
            return None
        last_seq = min(int(old_seq), int(max_seq) - 1)
        if last_seq < 1:
            return None
        rows = await session.scalars(
            sa.select(AuditEvent)
            .where(AuditEvent.tenant_id == tid, AuditEvent.seq <= last_seq)
            .order_by(AuditEvent.seq)
        )
        records = [
            AuditRecord(tid, r.seq, r.ts, r.actor, r.kind, r.payload, r.prev_hash, r.hash) for r in rows
        ]
        if not records:
            return None
        manifest = await asyncio.to_thread(_write_archive, records, out, tid, now)
        try:
            await session.execute(
                sa.delete(AuditEvent).where(AuditEvent.tenant_id == tid, AuditEvent.seq <= last_seq)
            )
        except BaseException:
            await asyncio.to_thread(_remove_archive, out, manifest)
            raise
    return manifest


def read_manifests(directory: Path, tenant_id: uuid.UUID) -> list[ArchiveManifest]:
    """Return the tenant's archive manifests in `directory`, oldest first."""
    if not directory.is_dir():
        return []
    manifests = [
        ArchiveManifest.from_json(p.read_text(encoding="utf-8"))
        for p in directory.glob(f"audit-{tenant_id}-*.json")
    ]
    return sorted(manifests, key=lambda m: m.first_seq)


def _read_rows(path: Path, tenant_id: uuid.UUID) -> list[AuditRecord]:
    table = pq.read_table(path, schema=_SCHEMA)
    return [
        AuditRecord(
            tenant_id=tenant_id,
            seq=int(row["seq"]),
            ts=row["ts"].astimezone(UTC),
            actor=row["actor"],
            kind=row["kind"],
            payload=row["payload"],
            prev_hash=row["prev_hash"],
            hash=row["hash"],
        )
        for row in table.to_pylist()
    ]


def _check_archives(checker: ChainChecker, tenant_id: uuid.UUID, directory: Path) -> bool:
    for manifest in read_manifests(directory, tenant_id):
        path = directory / manifest.parquet_file
        if not path.is_file():
            checker.fail(manifest.first_seq, "deleted", f"archive file {path.name} is missing")
            return False
        if _sha256_file(path) != manifest.parquet_sha256:
            checker.fail(manifest.first_seq, "archive_tampered", f"{path.name}: sha256 differs from manifest")
            return False
        try:
            rows = _read_rows(path, tenant_id)
        except (OSError, pa.ArrowException) as exc:
            checker.fail(manifest.first_seq, "archive_tampered", f"{path.name}: unreadable ({exc})")
            return False
        if rows and not checker.feed(rows):
            return False
        if (
            not rows
            or len(rows) != manifest.row_count
            or rows[0].seq != manifest.first_seq
            or rows[-1].seq != manifest.last_seq
            or rows[-1].hash != manifest.last_hash
        ):
            checker.fail(manifest.first_seq, "archive_mismatch", f"{path.name}: rows disagree with manifest")
            return False
    return True


async def verify_archives(checker: ChainChecker, tenant_id: uuid.UUID, directory: Path) -> bool:
    """Feed the tenant's archived events to `checker`, checking files and manifests; False on a break."""
    return await asyncio.to_thread(_check_archives, checker, tenant_id, directory)
