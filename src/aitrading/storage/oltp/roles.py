"""The application's PostgreSQL role: created and granted by the schema owner, checked by the services.

Row-level security binds a role only if it is not a superuser, has no BYPASSRLS and does not own (or belong
to the owner of) the tables: an owner can `ALTER TABLE … NO FORCE ROW LEVEL SECURITY` or drop a policy.
So migrations run as the owner, and `provision_app_role` makes the role the services log in as: LOGIN,
NOSUPERUSER, NOBYPASSRLS, NOCREATEDB, NOCREATEROLE, and nothing but the DML each table needs (see
docs/adr/0015-row-level-security.md). It runs after every upgrade, in the same transaction and under the
migration lock, so tables a later migration adds are granted the moment they exist.

The password reaches the server only as a SCRAM-SHA-256 verifier computed here (RFC 5802/7677, the format
`pg_authid` stores), so neither statement logs nor `pg_stat_activity` ever show it in clear.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError

from aitrading.common.errors import ConfigError
from aitrading.storage.oltp.models import Base

__all__ = [
    "APP_ROLE_PATTERN",
    "AppRole",
    "provision_app_role",
    "rls_bypass_reason",
    "scram_sha256_verifier",
    "table_privileges",
]

APP_ROLE_PATTERN = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
"""Role names accepted: lower-case SQL identifiers that need no quoting (they also appear in URLs)."""

SCRAM_ITERATIONS = 4096  # PostgreSQL's own default (scram_iterations)

DML = ("SELECT", "INSERT", "UPDATE", "DELETE")
# Tables whose rows the application must not change in place. audit_events is append-only (its trigger
# refuses UPDATE too; without the privilege the refusal does not depend on the trigger alone); the archiver
# deletes the oldest events. alembic_version is the migrations' own: readable, so `current()` can report it.
_DUPLICATE = ("42710", "23505")  # duplicate_object; unique_violation on pg_authid when both raced to commit
_PRIVILEGES: dict[str, tuple[str, ...]] = {
    "audit_events": ("SELECT", "INSERT", "DELETE"),
    "alembic_version": ("SELECT",),
}


@dataclass(frozen=True)
class AppRole:
    """The login role services connect as, and its password (never shown in repr)."""

    name: str
    password: str = field(repr=False)

    def __post_init__(self) -> None:
        if not APP_ROLE_PATTERN.match(self.name):
            raise ConfigError(
                f"storage.oltp_app_role: {self.name!r} is not a plain role name "
                "(lower-case letters, digits and _, at most 63, not starting with a digit)"
            )
        if not self.password:
            raise ConfigError("storage.oltp_app_password is empty: the application role needs a password")


def table_privileges(table: str) -> tuple[str, ...]:
    """Return the privileges the application role holds on `table`."""
    return _PRIVILEGES.get(table, DML)


def scram_sha256_verifier(
    password: str, *, salt: bytes | None = None, iterations: int = SCRAM_ITERATIONS
) -> str:
    """Return the SCRAM-SHA-256 verifier PostgreSQL stores for `password` (`SCRAM-SHA-256$i:salt$sk:svk`).

    PostgreSQL applies SASLprep to the password first; for ASCII passwords (and generated ones) that is the
    identity, which is all this function promises.
    """
    salt = salt if salt is not None else secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
    client_key = hmac.digest(salted, b"Client Key", "sha256")
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.digest(salted, b"Server Key", "sha256")

    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode("ascii")

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _ident(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'


def provision_app_role(conn: Connection, role: AppRole) -> None:
    """Create or update `role` and grant it exactly its table privileges; run as the schema owner.

    Refuses (ConfigError) a role that is the connected owner, an existing superuser or BYPASSRLS role, or
    one that owns or inherits ownership of a table. Needs CREATEROLE (or superuser) on the owner.
    """
    owner = conn.execute(sa.text("SELECT current_user")).scalar_one()
    if role.name == owner:
        raise ConfigError(
            f"storage.oltp_app_role {role.name!r} is the role that owns the schema (the storage.oltp_url "
            "user); row-level security does not bind an owner, so the services need another role"
        )
    name = _ident(role.name)
    _create_or_update(conn, role, owner)
    db = conn.execute(sa.text("SELECT current_database()")).scalar_one()
    schema = conn.execute(sa.text("SELECT current_schema()")).scalar_one()
    conn.exec_driver_sql(f"GRANT CONNECT ON DATABASE {_ident(db)} TO {name}")
    conn.exec_driver_sql(f"GRANT USAGE ON SCHEMA {_ident(schema)} TO {name}")
    ours = {*Base.metadata.tables, "alembic_version"}
    present = conn.execute(
        sa.text("SELECT tablename FROM pg_tables WHERE schemaname = :s"), {"s": schema}
    ).scalars()
    for table in sorted(ours.intersection(present)):
        qualified = f"{_ident(schema)}.{_ident(table)}"
        conn.exec_driver_sql(f"REVOKE ALL ON {qualified} FROM {name}")
        conn.exec_driver_sql(f"GRANT {', '.join(table_privileges(table))} ON {qualified} TO {name}")
    reason = rls_bypass_reason(conn, role.name)
    if reason is not None:
        raise ConfigError(
            f"application role {role.name!r} would not be bound by row-level security: {reason}"
        )


def _create_or_update(conn: Connection, role: AppRole, owner: str) -> None:
    name, verifier = _ident(role.name), _literal(scram_sha256_verifier(role.password))
    for attempt in (1, 2):
        flags = conn.execute(
            sa.text("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = :r"), {"r": role.name}
        ).first()
        if flags is not None and (flags.rolsuper or flags.rolbypassrls):
            # Never demote a privileged role someone else relies on; the configuration names the wrong role.
            raise ConfigError(
                f"storage.oltp_app_role {role.name!r} is an existing superuser or BYPASSRLS role; row-level "
                "security would not bind it: name a role of its own (migrations create it)"
            )
        try:
            with conn.begin_nested():
                if flags is None:
                    conn.exec_driver_sql(
                        f"CREATE ROLE {name} LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE "
                        f"NOREPLICATION PASSWORD {verifier}"
                    )
                else:
                    conn.exec_driver_sql(
                        f"ALTER ROLE {name} LOGIN NOCREATEDB NOCREATEROLE PASSWORD {verifier}"
                    )
            return
        except DBAPIError as exc:
            # Roles are cluster-wide: a migration of another database may have created it meanwhile.
            if flags is None and attempt == 1 and getattr(exc.orig, "sqlstate", None) in _DUPLICATE:
                continue
            raise ConfigError(
                f"cannot create or update the application role {role.name!r} as {owner!r}: {exc.orig}; the "
                "storage.oltp_url user needs CREATEROLE (or create the role NOSUPERUSER NOBYPASSRLS by hand)"
            ) from exc


def rls_bypass_reason(conn: Connection, role: str | None = None) -> str | None:
    """Say why `role` (default: the connected user) escapes row-level security here, or None if it cannot.

    PostgreSQL only. Checks superuser, BYPASSRLS, and ownership (direct or through membership) of any table
    of the schema, since an owner can switch row-level security off.
    """
    row = conn.execute(
        sa.text(
            "SELECT r.rolname, r.rolsuper, r.rolbypassrls, "
            "  (SELECT string_agg(t.tablename, ', ' ORDER BY t.tablename) FROM pg_tables t "
            "   WHERE t.schemaname = current_schema() "
            "     AND pg_has_role(r.oid, t.tableowner, 'MEMBER')) AS owns "
            "FROM pg_roles r WHERE r.rolname = coalesce(:role, current_user)"
        ),
        {"role": role},
    ).one()
    if row.rolsuper:
        return f"{row.rolname} is a superuser"
    if row.rolbypassrls:
        return f"{row.rolname} has BYPASSRLS"
    if row.owns:
        return f"{row.rolname} owns (or is a member of the owner of) {row.owns}"
    return None
