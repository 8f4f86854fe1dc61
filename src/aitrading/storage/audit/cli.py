"""`aitrading audit verify|archive`: check a tenant's hash chain (archives included), export old events.

`verify` exits 0 when every chain it checks is intact and 1 naming the first edited, deleted or reordered
event otherwise (2 for a bad argument). `archive` moves events older than N days to Parquet + ZSTD with a
manifest, after which `verify --archive-dir` checks the chain across that boundary.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Annotated

import sqlalchemy as sa
import typer

from aitrading.common.clock import LiveClock
from aitrading.common.config import load_config
from aitrading.storage.audit.archive import export_older_than
from aitrading.storage.audit.chain import AuditLog, VerifyResult
from aitrading.storage.oltp import Database, Tenant

__all__ = ["app"]

app = typer.Typer(
    help="The tamper-evident audit trail: verify chains, archive old events.", no_args_is_help=True
)

TenantOpt = Annotated[
    str | None, typer.Option("--tenant", "-t", help="Tenant slug or id; default: every tenant")
]
ArchiveOpt = Annotated[Path | None, typer.Option("--archive-dir", help="Directory of Parquet archives")]


async def _tenants(db: Database, wanted: str | None) -> list[tuple[uuid.UUID, str]]:
    async with db.session() as session:
        rows = (await session.execute(sa.select(Tenant.id, Tenant.slug).order_by(Tenant.slug))).all()
    found = [(r[0], r[1]) for r in rows if wanted is None or wanted in (r[1], str(r[0]))]
    if wanted is not None and not found:
        raise typer.BadParameter(f"no tenant {wanted!r}", param_hint="--tenant")
    return found


async def _verify(tenant: str | None, archive_dir: Path | None) -> list[tuple[str, VerifyResult]]:
    cfg = load_config()
    clock = LiveClock()
    db = Database(cfg.storage.resolved_oltp_url(), clock=clock, migrate_on_start=False)
    await db.start()
    try:
        log = AuditLog(db, clock)
        out = []
        for tid, slug in await _tenants(db, tenant):
            directory = None if archive_dir is None else archive_dir
            out.append((slug, await log.verify(tid, directory)))
        return out
    finally:
        await db.stop()


@app.command("verify")
def verify(tenant: TenantOpt = None, archive_dir: ArchiveOpt = None) -> None:
    """Verify the hash chain of one tenant or of all; name the first broken event."""
    results = asyncio.run(_verify(tenant, archive_dir))
    broken = 0
    for slug, result in results:
        if result.ok:
            typer.echo(f"{slug}: ok, {result.checked} events")
        else:
            broken += 1
            typer.echo(
                f"{slug}: BROKEN at seq {result.first_bad_seq}: {result.problem} ({result.detail}); "
                f"{result.checked} events checked"
            )
    raise typer.Exit(1 if broken else 0)


async def _archive(tenant: str | None, days: float, directory: Path) -> list[str]:
    cfg = load_config()
    clock = LiveClock()
    db = Database(cfg.storage.resolved_oltp_url(), clock=clock, migrate_on_start=False)
    await db.start()
    try:
        log = AuditLog(db, clock)
        lines = []
        for tid, slug in await _tenants(db, tenant):
            manifest = await export_older_than(log, tid, days, directory)
            lines.append(
                f"{slug}: nothing older than {days} days" if manifest is None else f"{slug}: {manifest}"
            )
        return lines
    finally:
        await db.stop()


@app.command("archive")
def archive(
    directory: Annotated[Path, typer.Option("--dir", help="Where the Parquet files and manifests go")],
    older_than_days: Annotated[float, typer.Option(help="Export events older than this")] = 365.0,
    tenant: TenantOpt = None,
) -> None:
    """Export events older than N days to Parquet + ZSTD with a manifest; delete them from the database."""
    for line in asyncio.run(_archive(tenant, older_than_days, directory)):
        typer.echo(line)
