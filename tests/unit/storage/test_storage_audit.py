"""The hash-chained audit log on an embedded SQLite file: append, verify, tamper detection, archive."""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from aitrading.common.clock import TestClock
from aitrading.common.errors import BadInputError
from aitrading.storage.audit.archive import ArchiveManifest, export_older_than, read_manifests
from aitrading.storage.audit.chain import (
    GENESIS_HASH,
    AuditLog,
    canonical_event,
    canonical_json,
    event_hash,
)
from aitrading.storage.oltp import (
    Database,
    current,
    downgrade,
    ensure_tenant,
    head,
    make_engine,
    upgrade,
)

DAY = 86_400.0


@pytest.fixture
def clock() -> TestClock:
    return TestClock()


@pytest.fixture
async def db(tmp_path: Path, clock: TestClock) -> AsyncIterator[Database]:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'oltp.sqlite'}", clock=clock, migrate_on_start=True)
    await database.start()
    yield database
    await database.stop()


@pytest.fixture
async def tenant(db: Database) -> uuid.UUID:
    async with db.session() as s:
        t = await ensure_tenant(s, "acme", "Acme Fund")
        return t.id


@pytest.fixture
def log(db: Database, clock: TestClock) -> AuditLog:
    return AuditLog(db, clock)


async def append_n(log: AuditLog, clock: TestClock, tenant: uuid.UUID, n: int, *, step: float = 60.0) -> None:
    for i in range(n):
        await log.append(tenant, "user:alice", "order.submitted", {"i": i, "volume": Decimal("0.10")})
        clock.advance(step)


async def sql(db: Database, statement: str, **params: object) -> None:
    async with db.engine.begin() as conn:
        await conn.execute(sa.text(statement), params)


async def row(db: Database, tenant: uuid.UUID, seq: int) -> dict[str, object]:
    async with db.engine.connect() as conn:
        result = await conn.execute(
            sa.text("SELECT * FROM audit_events WHERE tenant_id = :t AND seq = :s"),
            {"t": tenant.hex, "s": seq},
        )
        return dict(result.mappings().one())


# --- hashing and append -------------------------------------------------------------------------------------


def test_hash_is_sha256_of_prev_hash_and_canonical_event() -> None:
    ts = datetime(2024, 1, 1, 12, 0, 0, 123456, tzinfo=UTC)
    payload = canonical_json({"b": 1, "a": "x"})
    assert payload == '{"a":"x","b":1}'
    text = canonical_event(3, ts, "bob", "risk.denied", payload)
    assert text == (
        '{"actor":"bob","kind":"risk.denied","payload":"{\\"a\\":\\"x\\",\\"b\\":1}",'
        '"seq":3,"ts":"2024-01-01T12:00:00.123456Z"}'
    )
    expected = hashlib.sha256((GENESIS_HASH + text).encode()).hexdigest()
    assert event_hash(GENESIS_HASH, 3, ts, "bob", "risk.denied", payload) == expected


@pytest.mark.parametrize(
    ("actor", "kind", "payload"),
    [
        ("engine", "order.state", '{"a":"x"}'),
        ('quo"te\\back', "k\n\t\r\b\f", "\x00\x1f\x7f"),
        ("naïve €", "\u2028\u2029", "😀 漢字"),
        ("", "", ""),
    ],
)
def test_canonical_event_is_the_canonical_json_of_its_fields(actor: str, kind: str, payload: str) -> None:
    ts = datetime(2024, 1, 1, 12, 0, 0, 123456, tzinfo=UTC)
    fields = {
        "actor": actor,
        "kind": kind,
        "payload": payload,
        "seq": 12,
        "ts": "2024-01-01T12:00:00.123456Z",
    }
    assert canonical_event(12, ts, actor, kind, payload) == canonical_json(fields)
    assert canonical_json(fields) == json.dumps(
        fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


async def test_migration_0002_is_head_and_downgrades_to_0001(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'm.sqlite'}"

    async def tables() -> set[str]:
        engine = make_engine(url)
        try:
            async with engine.connect() as conn:
                return set(await conn.run_sync(lambda sync: sa.inspect(sync).get_table_names()))
        finally:
            await engine.dispose()

    await upgrade(url)
    assert await current(url) == head() == "0005"
    assert "audit_events" in await tables()
    await downgrade(url, "0001")
    assert await current(url) == "0001"
    assert "audit_events" not in await tables()
    assert {"tenants", "users", "devices"} <= await tables()
    await upgrade(url)
    assert "audit_events" in await tables()


async def test_append_numbers_and_chains_events_per_tenant(
    db: Database, log: AuditLog, tenant: uuid.UUID, clock: TestClock
) -> None:
    first = await log.append(tenant, "user:alice", "security.login_failed", {"ip": "10.0.0.1"})
    second = await log.append(tenant, "engine", "order.submitted", {"price": Decimal("1.23456")})
    assert (first.seq, second.seq) == (1, 2)
    assert first.prev_hash == GENESIS_HASH
    assert second.prev_hash == first.hash
    assert second.payload == '{"price":"1.23456"}'
    assert first.ts == clock.utcnow()
    assert second.recomputed_hash() == second.hash
    async with db.session() as s:
        other = (await ensure_tenant(s, "other", "Other")).id
    assert (await log.append(other, "x", "order.submitted", {})).seq == 1


async def test_append_refuses_bad_input(log: AuditLog, tenant: uuid.UUID) -> None:
    with pytest.raises(BadInputError):
        await log.append(tenant, "a", "", {})
    with pytest.raises(BadInputError):
        await log.append(tenant, "a", "k", {"x": float("nan")})
    with pytest.raises(BadInputError):
        await log.append(tenant, "a", "k", {"x": object()})


async def test_concurrent_appends_on_sqlite_get_consecutive_seqs(log: AuditLog, tenant: uuid.UUID) -> None:
    records = await asyncio.gather(*(log.append(tenant, "a", "order.submitted", {"i": i}) for i in range(20)))
    assert sorted(r.seq for r in records) == list(range(1, 21))
    assert (await log.verify(tenant)).ok


# --- verify -------------------------------------------------------------------------------------------------


async def test_fifty_events_verify_ok(log: AuditLog, tenant: uuid.UUID, clock: TestClock) -> None:
    await append_n(log, clock, tenant, 50)
    result = await log.verify(tenant)
    assert result.ok
    assert result.checked == 50
    assert result.first_bad_seq is None
    assert result.problem is None


async def test_one_changed_payload_byte_is_edited_at_that_seq(
    db: Database, log: AuditLog, tenant: uuid.UUID, clock: TestClock
) -> None:
    await append_n(log, clock, tenant, 50)
    payload = str((await row(db, tenant, 17))["payload"])
    tampered = payload.replace('"i":16', '"i":18')
    assert tampered != payload
    assert len(tampered) == len(payload)
    await sql(db, "UPDATE audit_events SET payload = :p WHERE seq = 17", p=tampered)
    result = await log.verify(tenant)
    assert (result.ok, result.problem, result.first_bad_seq, result.checked) == (False, "edited", 17, 16)


async def test_deleted_event_is_reported_at_the_gap(
    db: Database, log: AuditLog, tenant: uuid.UUID, clock: TestClock
) -> None:
    await append_n(log, clock, tenant, 50)
    await sql(db, "DELETE FROM audit_events WHERE seq = 30")
    result = await log.verify(tenant)
    assert (result.ok, result.problem, result.first_bad_seq) == (False, "deleted", 30)


async def test_appends_continue_numbering_after_earlier_ones(
    log: AuditLog, tenant: uuid.UUID, clock: TestClock
) -> None:
    await append_n(log, clock, tenant, 5)
    assert (await log.append(tenant, "a", "k", {})).seq == 6


async def test_swapped_contents_are_reported_as_edited_at_the_first(
    db: Database, log: AuditLog, tenant: uuid.UUID, clock: TestClock
) -> None:
    await append_n(log, clock, tenant, 50)
    a, b = await row(db, tenant, 10), await row(db, tenant, 25)
    for target, source in ((10, b), (25, a)):
        await sql(
            db,
            "UPDATE audit_events SET ts = :ts, actor = :actor, kind = :kind, payload = :payload "
            "WHERE seq = :s",
            ts=source["ts"],
            actor=source["actor"],
            kind=source["kind"],
            payload=source["payload"],
            s=target,
        )
    result = await log.verify(tenant)
    assert (result.ok, result.problem, result.first_bad_seq) == (False, "edited", 10)


async def test_swapped_and_rehashed_events_are_reported_as_reordered_at_the_first(
    db: Database, log: AuditLog, tenant: uuid.UUID, clock: TestClock
) -> None:
    """A forger swaps two events and recomputes their own hashes but cannot fix the rest of the chain."""
    await append_n(log, clock, tenant, 50)
    records = await log.records(tenant)
    ten, eleven = records[9], records[10]
    for seq, own, src in ((10, ten, eleven), (11, eleven, ten)):
        forged = event_hash(src.prev_hash, seq, own.ts, src.actor, src.kind, src.payload)
        await sql(
            db,
            "UPDATE audit_events SET payload = :p, prev_hash = :ph, hash = :h WHERE seq = :s",
            p=src.payload,
            ph=src.prev_hash,
            h=forged,
            s=seq,
        )
    result = await log.verify(tenant)
    assert (result.ok, result.problem, result.first_bad_seq) == (False, "reordered", 10)


# --- archive ------------------------------------------------------------------------------------------------


async def archived(log: AuditLog, tenant: uuid.UUID, clock: TestClock, directory: Path) -> ArchiveManifest:
    await append_n(log, clock, tenant, 50, step=DAY)  # event i is at day i; the clock ends at day 50
    manifest = await export_older_than(log, tenant, 30.5, directory)  # days 0..19 are older than 30.5 days
    assert manifest is not None
    return manifest


async def test_archive_oldest_twenty_then_verify_across_the_boundary(
    log: AuditLog, tenant: uuid.UUID, clock: TestClock, tmp_path: Path
) -> None:
    directory = tmp_path / "archive"
    manifest = await archived(log, tenant, clock, directory)
    assert (manifest.first_seq, manifest.last_seq, manifest.row_count) == (1, 20, 20)
    assert manifest.first_prev_hash == GENESIS_HASH
    live = await log.records(tenant)
    assert [r.seq for r in live] == list(range(21, 51))
    assert live[0].prev_hash == manifest.last_hash
    parquet = directory / manifest.parquet_file
    assert hashlib.sha256(parquet.read_bytes()).hexdigest() == manifest.parquet_sha256
    assert pq.ParquetFile(parquet).metadata.row_group(0).column(0).compression == "ZSTD"
    on_disk = json.loads(parquet.with_suffix(".json").read_text())
    assert on_disk["last_hash"] == manifest.last_hash
    assert on_disk["tenant_id"] == str(tenant)
    assert read_manifests(directory, tenant) == [manifest]

    result = await log.verify(tenant, directory)
    assert (result.ok, result.checked) == (True, 50)
    missing = await log.verify(tenant)  # without the archive the live chain starts mid-way
    assert (missing.problem, missing.first_bad_seq) == ("deleted", 1)
    assert (await log.append(tenant, "a", "k", {})).seq == 51
    assert (await log.verify(tenant, directory)).ok


async def test_second_archive_continues_the_first_and_the_newest_event_stays_live(
    log: AuditLog, tenant: uuid.UUID, clock: TestClock, tmp_path: Path
) -> None:
    directory = tmp_path / "archive"
    await archived(log, tenant, clock, directory)
    second = await export_older_than(log, tenant, 0, directory)
    assert second is not None
    assert (second.first_seq, second.last_seq) == (21, 49)
    assert [r.seq for r in await log.records(tenant)] == [50]
    assert await export_older_than(log, tenant, 0, directory) is None
    assert (await log.verify(tenant, directory)).ok


async def test_tampered_parquet_file_fails_its_sha256(
    log: AuditLog, tenant: uuid.UUID, clock: TestClock, tmp_path: Path
) -> None:
    directory = tmp_path / "archive"
    manifest = await archived(log, tenant, clock, directory)
    parquet = directory / manifest.parquet_file
    table = pq.read_table(parquet)
    payloads = table.column("payload").to_pylist()
    payloads[4] = payloads[4].replace('"i":4', '"i":5')
    table = table.set_column(table.schema.get_field_index("payload"), "payload", [payloads])
    pq.write_table(table, parquet, compression="zstd")
    result = await log.verify(tenant, directory)
    assert (result.ok, result.problem, result.first_bad_seq) == (False, "archive_tampered", 1)

    # A forger who also rewrites the manifest's sha256 is caught by the re-hash of the row.
    data = json.loads(parquet.with_suffix(".json").read_text())
    data["parquet_sha256"] = hashlib.sha256(parquet.read_bytes()).hexdigest()
    parquet.with_suffix(".json").write_text(json.dumps(data))
    result = await log.verify(tenant, directory)
    assert (result.ok, result.problem, result.first_bad_seq) == (False, "edited", 5)


async def test_live_chain_that_does_not_continue_the_archive_is_reported_at_the_boundary(
    db: Database, log: AuditLog, tenant: uuid.UUID, clock: TestClock, tmp_path: Path
) -> None:
    directory = tmp_path / "archive"
    await archived(log, tenant, clock, directory)
    first_live = (await log.records(tenant, limit=1))[0]
    forged_prev = "f" * 64
    forged = event_hash(
        forged_prev, first_live.seq, first_live.ts, first_live.actor, first_live.kind, first_live.payload
    )
    await sql(db, "UPDATE audit_events SET prev_hash = :p, hash = :h WHERE seq = 21", p=forged_prev, h=forged)
    result = await log.verify(tenant, directory)
    assert (result.ok, result.problem, result.first_bad_seq) == (False, "reordered", 21)


async def test_missing_parquet_file_is_reported_as_deleted(
    log: AuditLog, tenant: uuid.UUID, clock: TestClock, tmp_path: Path
) -> None:
    directory = tmp_path / "archive"
    manifest = await archived(log, tenant, clock, directory)
    (directory / manifest.parquet_file).unlink()
    result = await log.verify(tenant, directory)
    assert (result.ok, result.problem, result.first_bad_seq) == (False, "deleted", 1)


async def test_export_with_nothing_old_enough_returns_none(
    log: AuditLog, tenant: uuid.UUID, clock: TestClock, tmp_path: Path
) -> None:
    await append_n(log, clock, tenant, 5)
    assert await export_older_than(log, tenant, 30, tmp_path) is None
    with pytest.raises(BadInputError):
        await export_older_than(log, tenant, -1, tmp_path)
