"""`aitrading tenants|users|keys` against the configured database while the platform runs on it.

What the CLI creates signs in and authenticates through the running gateway; what it revokes or disables
stops working there (API keys after the gateway's key cache, sessions at once: refresh tokens live in the
database); every change is in the tenant's audit chain with the actor `cli:<os user>`.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from gateway_platform import PASSWORD, Background, Platform, User, platform_in_background
from typer.testing import CliRunner

from aitrading.cli import app
from aitrading.storage.audit import AuditLog

pytestmark = pytest.mark.slow


@pytest.fixture
def running(tmp_path: Path) -> Iterator[tuple[Background, Platform]]:
    with platform_in_background(tmp_path) as both:
        yield both


def run(*args: str, stdin: str | None = None, code: int = 0) -> str:
    result = CliRunner().invoke(app, list(args), input=stdin)
    assert result.exit_code == code, (result.output, result.exception)
    return result.output


def create_user(email: str, role: str) -> str:
    out = run(
        "users", "create", "-t", "acme", "--email", email, "--role", role, "--password-stdin", stdin=PASSWORD
    )
    found = re.search(r"\(([0-9a-f-]{36})\)", out)
    assert found is not None, out
    return found.group(1)


def test_cli_changes_take_effect_on_the_running_gateway_and_are_audited(
    running: tuple[Background, Platform],
) -> None:
    bg, p = running
    created = run("tenants", "create", "acme", "--name", "Acme Fund", "--tier", "pro")
    tenant = re.search(r"\(([0-9a-f-]{36})\)", created)
    assert tenant is not None, created
    assert "acme" in run("tenants", "list")
    pm_id = uuid.UUID(create_user("pm@acme.io", "portfolio_manager"))
    pm = User(uuid.UUID(tenant.group(1)), "acme", pm_id, "pm@acme.io", "portfolio_manager")
    create_user("bot@acme.io", "api_user")
    listed = run("users", "list", "-t", "acme")
    assert "pm@acme.io" in listed
    assert "bot@acme.io" in listed
    out = run("keys", "create", "-t", "acme", "--user", "bot@acme.io", "--name", "ci", "--scope", "read")
    key = re.search(r"aitk_[0-9a-f]{32}_[A-Za-z0-9_-]{43}", out)
    assert key is not None, out
    assert key.group(0)[:37] in run("keys", "list", "-t", "acme")

    # What the CLI made works through the gateway.
    with_key = {"X-API-Key": key.group(0)}
    assert bg.run(p.client.get("/api/v1/engine/accounts", headers=with_key)).status_code == 200
    bg.run(p.sign_in(pm))
    assert bg.run(p.client.get("/api/v1/engine/accounts", headers=pm.auth)).status_code == 200

    # What it revokes stops working there.
    assert "revoked API key" in run("keys", "revoke", "-t", "acme", key.group(0)[:37])
    p.clock.advance(31)  # the gateway trusts a verified key for 30 s without asking the database
    refused = bg.run(p.client.get("/api/v1/engine/accounts", headers=with_key))
    assert refused.status_code == 401
    assert "revoked" in refused.json()["detail"]
    assert "disabled user pm@acme.io" in run("users", "disable", "-t", "acme", "pm@acme.io")
    refresh = bg.run(p.client.post("/api/v1/auth/refresh", json={"refresh_token": pm.refresh}))
    assert refresh.status_code == 401
    assert bg.run(p.login(pm)).status_code == 401
    assert "unlocked user pm@acme.io" in run("users", "unlock", "-t", "acme", "pm@acme.io")
    assert "disabled tenant acme" in run("tenants", "disable", "acme")
    assert "no tenant" in run("users", "list", "-t", "nope", code=2)

    records = bg.run(AuditLog(p.kernel.db, p.clock).records(pm.tenant, limit=1000))
    by_cli = [r.kind for r in records if r.actor.startswith("cli")]
    for kind in (
        "tenant.created",
        "user.created",
        "apikey.created",
        "apikey.revoked",
        "user.disabled",
        "user.unlocked",
        "tenant.disabled",
    ):
        assert kind in by_cli, (kind, by_cli)
    assert by_cli.count("user.created") == 2
