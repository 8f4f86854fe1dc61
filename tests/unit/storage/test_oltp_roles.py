"""The application role's configuration: names, passwords, derived URLs, production checks (no server needed).

The PostgreSQL side (role creation, grants, isolation) is in tests/integration/test_postgres_rls.py.
"""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from aitrading.common.config import PlatformConfig, load_config
from aitrading.common.errors import ConfigError
from aitrading.storage.oltp import AppRole, Database
from aitrading.storage.oltp.roles import scram_sha256_verifier, table_privileges

PG = "postgresql+asyncpg://owner:owner-secret@db.internal:6432/aitrading?ssl=require"
REAL_SECRETS = {
    "secret_key": "a-real-secret-key-0123456789",
    "service_token_secret": "a-real-service-token-0123456789",
}

# What PostgreSQL 15 itself stored for `CREATE ROLE … PASSWORD 'pencil'` (password_encryption=scram-sha-256).
PG_PENCIL = (
    "SCRAM-SHA-256$4096:Db8NH2D8tkEVcbrpriwcQQ==$fZdxInoOQvrzsmJ/mcH/ONjKJVNUIaeyEn0mmnCpP34=:"
    "wKZhsvkCEey1+WMdo63/Xhs4Tt7DJaneIxv/1pCZEYc="
)


def test_scram_verifier_equals_the_one_postgresql_stored_for_the_same_salt() -> None:
    salt = base64.b64decode("Db8NH2D8tkEVcbrpriwcQQ==")
    assert scram_sha256_verifier("pencil", salt=salt) == PG_PENCIL
    assert scram_sha256_verifier("pencil!", salt=salt) != PG_PENCIL


def test_scram_verifier_uses_a_fresh_salt_each_time() -> None:
    one, two = scram_sha256_verifier("pencil"), scram_sha256_verifier("pencil")
    assert one != two
    assert one.startswith("SCRAM-SHA-256$4096:")


@pytest.mark.parametrize("name", ["", "App", "1app", "app-role", 'x"; DROP ROLE postgres; --', "a" * 64])
def test_app_role_refuses_names_that_are_not_plain_identifiers(name: str) -> None:
    with pytest.raises(ConfigError, match="oltp_app_role"):
        AppRole(name, "pw")


def test_app_role_refuses_an_empty_password_and_hides_it_in_repr() -> None:
    with pytest.raises(ConfigError, match="oltp_app_password"):
        AppRole("aitrading_app", "")
    assert "s3cret" not in repr(AppRole("aitrading_app", "s3cret"))


def test_audit_events_are_append_only_for_the_app_and_the_migration_table_read_only() -> None:
    assert table_privileges("orders") == ("SELECT", "INSERT", "UPDATE", "DELETE")
    assert table_privileges("audit_events") == ("SELECT", "INSERT", "DELETE")
    assert table_privileges("alembic_version") == ("SELECT",)


def test_app_url_is_the_owner_url_with_the_app_role_and_its_password() -> None:
    cfg = PlatformConfig(storage={"oltp_url": PG, "oltp_app_role": "svc", "oltp_app_password": "p@ss/w:rd"})
    app = make_url(cfg.storage.resolved_app_url())
    owner = make_url(cfg.storage.resolved_oltp_url())
    assert (app.username, app.password) == ("svc", "p@ss/w:rd")
    assert (app.host, app.port, app.database, dict(app.query)) == (
        owner.host,
        owner.port,
        owner.database,
        {"ssl": "require"},
    )
    assert owner.username == "owner"
    assert cfg.storage.uses_postgresql()


def test_sqlite_app_url_is_the_sqlite_url_unchanged(tmp_path: Path) -> None:
    cfg = PlatformConfig(storage={"data_dir": tmp_path})
    assert not cfg.storage.uses_postgresql()
    assert cfg.storage.resolved_app_url() == cfg.storage.resolved_oltp_url()
    assert cfg.storage.resolved_oltp_url() == f"sqlite+aiosqlite:///{tmp_path / 'aitrading.sqlite'}"


def test_config_refuses_an_app_role_name_that_is_not_a_plain_identifier() -> None:
    with pytest.raises(ConfigError, match="oltp_app_role"):
        load_config(storage={"oltp_url": PG, "oltp_app_role": "Robert'); DROP TABLE users;--"})


def test_production_on_postgresql_refuses_the_development_app_password() -> None:
    with pytest.raises(ConfigError, match="AITRADING_STORAGE__OLTP_APP_PASSWORD"):
        load_config(mode="production", security=REAL_SECRETS, storage={"oltp_url": PG})
    cfg = load_config(
        mode="production", security=REAL_SECRETS, storage={"oltp_url": PG, "oltp_app_password": "real-one"}
    )
    assert cfg.storage.default_secrets() == []


def test_production_on_sqlite_needs_no_database_password(tmp_path: Path) -> None:
    cfg = load_config(mode="production", security=REAL_SECRETS, storage={"data_dir": tmp_path})
    assert cfg.storage.default_secrets() == []


def test_the_app_password_is_hidden_in_the_config_services_publish() -> None:
    cfg = PlatformConfig(storage={"oltp_url": PG, "oltp_app_password": "hunter2-real"})
    assert "hunter2-real" not in str(cfg.for_service())


def test_database_from_config_connects_as_the_app_role_on_postgresql() -> None:
    cfg = PlatformConfig(storage={"oltp_url": PG, "oltp_app_role": "svc", "oltp_app_password": "pw-xyzzy"})
    db = Database.from_config(cfg)
    assert make_url(db.url).username == "svc"
    assert "pw-xyzzy" not in db.url  # safe to log


async def test_database_from_config_on_sqlite_behaves_as_before(tmp_path: Path) -> None:
    cfg = PlatformConfig(storage={"data_dir": tmp_path})
    db = Database.from_config(cfg, migrate_on_start=True)
    await db.start()
    try:
        assert db.url == cfg.storage.resolved_oltp_url()
        assert db.dialect == "sqlite"
        assert await db.ping() is True
        assert db.rls_bypass is None  # SQLite has no roles: the queries' tenant filters are the guard
    finally:
        await db.stop()
    assert (tmp_path / "aitrading.sqlite").is_file()
