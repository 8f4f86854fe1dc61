"""`aitrading tenants|users|keys`: identity administration from the command line; the configured database."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aitrading.cli import app
from aitrading.common.clock import LiveClock
from aitrading.common.config import load_config
from aitrading.gateway.identity import IdentityService
from aitrading.storage.audit import AuditLog
from aitrading.storage.cache import MemoryCache
from aitrading.storage.oltp import Database

PASSWORD = "correct horse battery staple"


@pytest.fixture
def cli() -> CliRunner:
    return CliRunner()


def run(cli: CliRunner, *args: str, stdin: str | None = None, code: int = 0) -> str:
    result = cli.invoke(app, list(args), input=stdin)
    assert result.exit_code == code, (result.output, result.exception)
    return result.output


async def with_identity(job):  # type: ignore[no-untyped-def]
    cfg = load_config()
    clock = LiveClock()
    db = Database(cfg.storage.resolved_oltp_url(), clock=clock)
    await db.start()
    try:
        identity = IdentityService.from_platform(cfg, db, MemoryCache(clock), clock)
        await identity.start()
        return await job(identity, db)
    finally:
        await db.stop()


def test_tenants_create_list_and_disable(cli: CliRunner, tmp_path: Path) -> None:
    assert "created tenant acme" in run(
        cli, "tenants", "create", "acme", "--name", "Acme Fund", "--tier", "pro"
    )
    assert (tmp_path / "var" / "aitrading.sqlite").is_file()  # the configured (default) database
    listed = run(cli, "tenants", "list")
    assert "acme" in listed
    assert "pro" in listed
    assert "platform" in listed  # the platform tenant whose chain audits untrusted events
    assert "already exists" in run(cli, "tenants", "create", "acme", code=2)
    assert "unknown tier" in run(cli, "tenants", "create", "other", "--tier", "gold", code=2)
    assert "disabled tenant acme" in run(cli, "tenants", "disable", "acme")
    assert "yes" in run(cli, "tenants", "list")


def test_users_create_from_stdin_list_disable_and_the_policy_applies(cli: CliRunner) -> None:
    run(cli, "tenants", "create", "acme")
    out = run(
        cli,
        "users",
        "create",
        "-t",
        "acme",
        "--email",
        "Boss@Acme.io",
        "--role",
        "tenant_admin",
        "--password-stdin",
        stdin=PASSWORD + "\n",
    )
    assert "created user boss@acme.io" in out
    weak = run(
        cli,
        "users",
        "create",
        "-t",
        "acme",
        "--email",
        "x@acme.io",
        "--role",
        "analyst",
        "--password-stdin",
        stdin="short\n",
        code=2,
    )
    assert "12 characters" in weak
    prompted = run(
        cli,
        "users",
        "create",
        "-t",
        "acme",
        "--email",
        "ann@acme.io",
        "--role",
        "analyst",
        stdin=f"{PASSWORD}\n{PASSWORD}\n",
    )
    assert "created user ann@acme.io" in prompted
    listed = run(cli, "users", "list", "-t", "acme")
    assert "boss@acme.io" in listed
    assert "ann@acme.io" in listed
    assert "disabled user ann@acme.io" in run(cli, "users", "disable", "-t", "acme", "ann@acme.io")
    assert "unlocked user boss@acme.io" in run(cli, "users", "unlock", "-t", "acme", "boss@acme.io")

    async def audited(identity: IdentityService, db: Database) -> list[str]:
        tenant = (await identity.directory.tenant("acme")).id
        return [r.kind for r in await AuditLog(db, LiveClock()).records(tenant)]

    kinds = asyncio.run(with_identity(audited))
    assert kinds[:2] == ["tenant.created", "user.created"]
    assert "user.disabled" in kinds


def test_keys_create_prints_the_key_once_and_it_authenticates_until_revoked(cli: CliRunner) -> None:
    run(cli, "tenants", "create", "acme")
    run(
        cli,
        "users",
        "create",
        "-t",
        "acme",
        "--email",
        "bot@acme.io",
        "--role",
        "api_user",
        "--password-stdin",
        stdin=PASSWORD + "\n",
    )
    out = run(
        cli, "keys", "create", "-t", "acme", "--user", "bot@acme.io", "--name", "ci", "--scope", "trade"
    )
    key = re.search(r"aitk_[0-9a-f]{32}_[A-Za-z0-9_-]{43}", out)
    assert key is not None
    listed = run(cli, "keys", "list", "-t", "acme")
    assert key.group(0)[:37] in listed  # the prefix aitk_<id>
    assert key.group(0)[38:] not in listed  # never the secret

    async def principal_roles(identity: IdentityService, db: Database) -> list[str]:
        principal, _ = await identity.api_keys.authenticate(key.group(0))
        return sorted(principal.roles)

    assert asyncio.run(with_identity(principal_roles)) == ["api_user", "scope:trade"]
    assert "revoked API key" in run(cli, "keys", "revoke", "-t", "acme", key.group(0)[:37])

    async def refused(identity: IdentityService, db: Database) -> str:
        from aitrading.gateway.identity import TokenRejected

        with pytest.raises(TokenRejected) as exc:
            await identity.api_keys.authenticate(key.group(0))
        return exc.value.reason

    assert asyncio.run(with_identity(refused)) == "API key revoked"


def test_keys_rotate_starts_a_new_signing_key_and_devices_can_be_listed_and_revoked(cli: CliRunner) -> None:
    run(cli, "tenants", "create", "acme")

    async def active_kid(identity: IdentityService, db: Database) -> str | None:
        return identity.ctx.keys.active_kid

    before = asyncio.run(with_identity(active_kid))
    out = run(cli, "keys", "rotate")
    after = asyncio.run(with_identity(active_kid))
    assert after != before
    assert after is not None
    assert after in out

    async def add_device(identity: IdentityService, db: Database) -> None:
        from aitrading.storage.oltp import register_device

        tenant = (await identity.directory.tenant("acme")).id
        async with db.session() as s:
            await register_device(s, tenant, "pc-1", "Trading PC")

    asyncio.run(with_identity(add_device))
    assert "pc-1" in run(cli, "keys", "list", "-t", "acme", "--devices")
    assert "revoked device pc-1" in run(cli, "keys", "revoke", "-t", "acme", "--device", "pc-1")
    assert "no device" in run(cli, "keys", "revoke", "-t", "acme", "--device", "pc-9", code=2)
