"""`aitrading audit verify` against a real SQLite database: ok, then a tampered event named by its seq."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from aitrading.cli import app
from aitrading.common.clock import TestClock
from aitrading.storage.audit import AuditLog
from aitrading.storage.oltp import Database, ensure_tenant


async def _seed(url: str) -> None:
    clock = TestClock()
    db = Database(url, clock=clock, migrate_on_start=True)
    await db.start()
    async with db.session() as s:
        tenant = (await ensure_tenant(s, "acme", "Acme")).id
    log = AuditLog(db, clock)
    for i in range(5):
        await log.append(tenant, "user:alice", "order.submitted", {"i": i})
        clock.advance(1)
    await db.stop()


async def _tamper(url: str) -> None:
    db = Database(url, clock=TestClock(), migrate_on_start=False)
    await db.start()
    async with db.engine.begin() as conn:
        await conn.execute(sa.text("UPDATE audit_events SET payload = :p WHERE seq = 3"), {"p": '{"i":9}'})
    await db.stop()


def test_audit_verify_passes_then_names_the_edited_event(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'a.sqlite'}"
    monkeypatch.setenv("AITRADING_STORAGE__OLTP_URL", url)
    asyncio.run(_seed(url))
    ok = CliRunner().invoke(app, ["audit", "verify"])
    assert ok.exit_code == 0, ok.output
    assert "acme: ok, 5 events" in ok.output
    asyncio.run(_tamper(url))
    broken = CliRunner().invoke(app, ["audit", "verify", "--tenant", "acme"])
    assert broken.exit_code == 1
    assert "BROKEN at seq 3: edited" in broken.output
    unknown = CliRunner().invoke(app, ["audit", "verify", "--tenant", "nobody"])
    assert unknown.exit_code == 2
