"""`aitrading tenants|users|keys …`: identity administration on the configured database.

Each command opens the OLTP database the config names (`storage.oltp_url`, SQLite under `storage.data_dir`
by default), brings its schema up to date, and works through `IdentityService`, so the same rules apply as
over HTTP (password policy, tier quotas, audit events with the actor `cli:<os user>`). Revocations reach the
platform's cache too, which stops live tokens at once when the cache is Redis; with the in-process cache
the gateway notices them within the access-token lifetime (15 minutes) and the API-key cache time.
"""

from __future__ import annotations

import asyncio
import getpass
import os
import sys
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from aitrading.common.errors import AITradingError, BadInputError

if TYPE_CHECKING:
    from aitrading.gateway.identity import IdentityService

__all__ = ["keys_app", "tenants_app", "users_app"]

tenants_app = typer.Typer(help="Tenants: create, list, disable.", no_args_is_help=True, add_completion=False)
users_app = typer.Typer(help="Users of a tenant: create, list, disable, unlock.", no_args_is_help=True)
keys_app = typer.Typer(
    help="API keys (create, list, revoke), agent device keys (list, revoke), token signing keys (rotate).",
    no_args_is_help=True,
)
console = Console()
err = Console(stderr=True)

_T = TypeVar("_T")
Tenant = Annotated[str, typer.Option("--tenant", "-t", help="The tenant's slug or id")]


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no user name in containers without a passwd entry
        return "cli"


def _run(job: Callable[[IdentityService], Awaitable[_T]]) -> _T:
    """Run `job(identity)` against the configured database; expected errors exit 2 with one line."""
    from aitrading.common.clock import LiveClock
    from aitrading.common.config import load_config
    from aitrading.common.logging import configure_logging
    from aitrading.gateway.identity import IdentityService
    from aitrading.storage.cache import make_cache
    from aitrading.storage.oltp import Database

    async def main() -> _T:
        cfg = load_config()
        configure_logging(os.environ.get("AITRADING_LOG_LEVEL", "WARNING"), json=cfg.log_json)
        clock = LiveClock()
        db = Database(cfg.storage.resolved_oltp_url(), clock=clock)
        cache = make_cache(cfg.storage.cache, url=cfg.storage.redis_url, clock=clock)
        await db.start()
        try:
            await db.migrate()
            identity = IdentityService.from_platform(cfg, db, cache, clock)
            await identity.start()
            return await job(identity)
        finally:
            await cache.close()
            await db.stop()

    try:
        return asyncio.run(main())
    except AITradingError as exc:
        err.print(f"[red]error:[/] {escape(str(exc))}", soft_wrap=True, highlight=False)
        raise typer.Exit(2) from None


def _table(title: str, columns: list[str], rows: list[list[object]]) -> None:
    texts = [["" if v is None else str(v) for v in row] for row in rows]
    table = Table(title=title)
    for i, col in enumerate(columns):
        # The first column identifies the row (slug, e-mail, key prefix): never cut it.
        widest = max([len(col), *(len(t[i]) for t in texts)])
        table.add_column(col, no_wrap=i == 0, min_width=widest if i == 0 else None)
    for row in texts:
        table.add_row(*row)
    console.print(table)


# -- tenants ----------------------------------------------------------------------------------------


@tenants_app.command("create")
def tenants_create(
    slug: Annotated[str, typer.Argument(help="Lower-case letters, digits and hyphens")],
    name: Annotated[str, typer.Option(help="Display name")] = "",
    tier: Annotated[str, typer.Option(help="free, pro or enterprise")] = "free",
) -> None:
    """Create a tenant."""

    async def job(identity: IdentityService) -> None:
        t = await identity.directory.create_tenant(slug, name or slug, tier, actor=_actor())
        console.print(f"created tenant {t.slug} ({t.id}), tier {t.tier}")

    _run(job)


@tenants_app.command("list")
def tenants_list() -> None:
    """List every tenant."""

    async def job(identity: IdentityService) -> None:
        rows = await identity.directory.list_tenants()
        _table(
            "Tenants",
            ["slug", "id", "name", "tier", "disabled"],
            [[t.slug, t.id, t.name, t.tier, "yes" if t.disabled else ""] for t in rows],
        )

    _run(job)


@tenants_app.command("disable")
def tenants_disable(slug: Annotated[str, typer.Argument(help="The tenant's slug or id")]) -> None:
    """Disable a tenant: its users can no longer sign in, and their sessions and API keys end."""

    async def job(identity: IdentityService) -> None:
        t = await identity.directory.disable_tenant(slug, actor=_actor())
        console.print(f"disabled tenant {t.slug}")

    _run(job)


# -- users ------------------------------------------------------------------------------------------


@users_app.command("create")
def users_create(
    tenant: Tenant,
    email: Annotated[str, typer.Option(help="Sign-in e-mail (stored in lower case)")],
    role: Annotated[
        str, typer.Option(help="platform_admin, tenant_admin, portfolio_manager, analyst, api_user")
    ],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from stdin")
    ] = False,
) -> None:
    """Create a user; the password comes from a prompt (asked twice) or from stdin."""
    from pydantic import ValidationError

    from aitrading.gateway.identity.schemas import UserCreate

    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = str(typer.prompt("Password", hide_input=True, confirmation_prompt=True))
    try:
        data = UserCreate(email=email, password=password, role=role)
    except ValidationError as exc:
        raise typer.BadParameter("; ".join(e["msg"] for e in exc.errors())) from None

    async def job(identity: IdentityService) -> None:
        t = await identity.directory.tenant(tenant)
        u = await identity.directory.create_user(t.id, data, actor=_actor(), may_create_platform_admin=True)
        console.print(f"created user {u.email} ({u.id}) with role {u.role} in tenant {t.slug}")

    _run(job)


@users_app.command("list")
def users_list(tenant: Tenant) -> None:
    """List the users of a tenant."""

    async def job(identity: IdentityService) -> None:
        t = await identity.directory.tenant(tenant)
        rows = await identity.directory.list_users(t.id)
        _table(
            f"Users of {t.slug}",
            ["email", "id", "role", "mfa", "disabled", "locked until"],
            [
                [
                    u.email,
                    u.id,
                    u.role,
                    "yes" if u.mfa_enabled else "",
                    "yes" if u.disabled else "",
                    u.locked_until,
                ]
                for u in rows
            ],
        )

    _run(job)


@users_app.command("disable")
def users_disable(tenant: Tenant, user: Annotated[str, typer.Argument(help="E-mail or id")]) -> None:
    """Disable a user and end its sessions and API keys."""

    async def job(identity: IdentityService) -> None:
        t = await identity.directory.tenant(tenant)
        u = await identity.directory.disable_user(t.id, user, actor=_actor())
        console.print(f"disabled user {u.email}")

    _run(job)


@users_app.command("unlock")
def users_unlock(tenant: Tenant, user: Annotated[str, typer.Argument(help="E-mail or id")]) -> None:
    """Lift a user's lockout after failed sign-ins."""

    async def job(identity: IdentityService) -> None:
        t = await identity.directory.tenant(tenant)
        u = await identity.directory.unlock_user(t.id, user, actor=_actor())
        console.print(f"unlocked user {u.email}")

    _run(job)


# -- keys -------------------------------------------------------------------------------------------


@keys_app.command("create")
def keys_create(
    tenant: Tenant,
    user: Annotated[str, typer.Option(help="The api_user's e-mail or id")],
    name: Annotated[str, typer.Option(help="What the key is for")],
    scope: Annotated[list[str] | None, typer.Option(help="read or trade (repeatable)")] = None,
    expires_days: Annotated[int, typer.Option(help="Days until it expires; 0 never")] = 90,
) -> None:
    """Create an API key and print it once (only its hash is kept)."""
    from pydantic import ValidationError

    from aitrading.gateway.identity.schemas import ApiKeyCreate

    async def job(identity: IdentityService) -> None:
        t = await identity.directory.tenant(tenant)
        u = await identity.directory.user(t.id, user)
        try:
            data = ApiKeyCreate(
                user_id=u.id, name=name, scopes=scope or ["read"], expires_in_days=expires_days or None
            )
        except ValidationError as exc:
            raise BadInputError("; ".join(e["msg"] for e in exc.errors())) from None
        created = await identity.api_keys.create(t.id, data, actor=_actor())
        err.print(f"API key {created.prefix} for {u.email}, scopes {' '.join(created.scopes)}; shown once:")
        typer.echo(created.key)

    _run(job)


@keys_app.command("list")
def keys_list(
    tenant: Tenant,
    devices: Annotated[bool, typer.Option("--devices", help="List agent device keys instead")] = False,
) -> None:
    """List a tenant's API keys (or agent devices)."""

    async def job(identity: IdentityService) -> None:
        t = await identity.directory.tenant(tenant)
        if devices:
            import sqlalchemy as sa

            from aitrading.storage.oltp import Device

            async with identity.ctx.db.session(t.id) as s:
                rows = list(await s.scalars(sa.select(Device).where(Device.tenant_id == t.id)))
                _table(
                    f"Devices of {t.slug}",
                    ["device", "name", "scopes", "last seen", "revoked"],
                    [[d.device_id, d.name, d.scopes, d.last_seen_at, d.revoked_at] for d in rows],
                )
            return
        keys = await identity.api_keys.list(t.id)
        _table(
            f"API keys of {t.slug}",
            ["prefix", "name", "scopes", "expires", "last used", "revoked"],
            [
                [k.prefix, k.name, " ".join(k.scopes), k.expires_at, k.last_used_at, k.revoked_at]
                for k in keys
            ],
        )

    _run(job)


@keys_app.command("revoke")
def keys_revoke(
    tenant: Tenant,
    key: Annotated[str, typer.Argument(help="API key id or prefix (aitk_…), or a device id with --device")],
    device: Annotated[bool, typer.Option("--device", help="Revoke an agent device key")] = False,
) -> None:
    """Revoke an API key (or an agent device's key)."""

    async def job(identity: IdentityService) -> None:
        t = await identity.directory.tenant(tenant)
        if device:
            from aitrading.storage.oltp import revoke_device

            async with identity.ctx.db.session(t.id) as s:
                found = await revoke_device(s, key, now=identity.ctx.clock.utcnow())
            if not found:
                raise BadInputError(f"no device {key!r} in tenant {t.slug}")
            await identity.ctx.audit.record(t.id, _actor(), "device.revoked", {"device": key})
            console.print(f"revoked device {key}")
            return
        raw = key.removeprefix("aitk_").split("_", 1)[0]
        try:
            key_id = uuid.UUID(raw)
        except ValueError:
            raise BadInputError(f"{key!r} is not an API key id") from None
        revoked = await identity.api_keys.revoke(t.id, key_id, actor=_actor())
        console.print(f"revoked API key {revoked.prefix}")

    _run(job)


@keys_app.command("rotate")
def keys_rotate() -> None:
    """Start signing access tokens with a new key (old keys verify until their tokens expire)."""

    async def job(identity: IdentityService) -> None:
        kid = await identity.rotate_signing_key(actor=_actor())
        console.print(f"new signing key {kid}")

    _run(job)
