"""The config HTTP API: ETag and If-Match (428, 409), effective config, history, who may read or write."""

from __future__ import annotations

import uuid

import httpx
import pytest

from aitrading.common.auth import TokenService

Tenants = tuple[uuid.UUID, uuid.UUID]


def auth(tokens: TokenService, subject: str, *roles: str, tenant: uuid.UUID | None = None) -> dict[str, str]:
    token = tokens.issue(subject, tenant=None if tenant is None else str(tenant), roles=roles)
    return {"Authorization": f"Bearer {token}"}


async def put(
    client: httpx.AsyncClient, path: str, body: object, headers: dict[str, str], version: int | None = 0
) -> httpx.Response:
    if version is not None:
        headers = {**headers, "If-Match": f'"{version}"'}
    return await client.put(f"/api/v1/{path}", json=body, headers=headers)


async def test_read_write_read_with_etags_and_if_match(
    client: httpx.AsyncClient, tokens: TokenService, tenants: Tenants
) -> None:
    admin = auth(tokens, "admin-a", "tenant_admin", tenant=tenants[0])
    first = await client.get("/api/v1/tenant/risk", headers=admin)
    assert first.status_code == 200
    assert first.headers["etag"] == '"0"'
    assert first.json()["value"] is None
    assert first.json()["version"] == 0
    written = await put(client, "tenant/risk", {"max_leverage": 20}, admin, version=0)
    assert written.status_code == 200, written.text
    assert written.headers["etag"] == '"1"'
    assert written.json()["value"] == {"max_leverage": 20}
    assert written.json()["updated_by"] == "admin-a"
    assert written.json()["tenant"] == str(tenants[0])
    again = await client.get("/api/v1/tenant/risk", headers=admin)
    assert again.json()["version"] == 1
    weak = await client.put(
        "/api/v1/tenant/risk", json={"max_leverage": 30}, headers={**admin, "If-Match": 'W/"1"'}
    )
    assert weak.status_code == 200
    assert weak.json()["version"] == 2


async def test_a_write_without_if_match_is_428_and_a_stale_one_is_409_with_the_current_version(
    client: httpx.AsyncClient, tokens: TokenService, tenants: Tenants
) -> None:
    admin = auth(tokens, "admin-a", "tenant_admin", tenant=tenants[0])
    missing = await put(client, "tenant/ui", {"theme": "dark"}, admin, version=None)
    assert missing.status_code == 428
    assert "If-Match" in missing.json()["detail"]
    assert (await put(client, "tenant/ui", {"theme": "dark"}, admin, version=0)).status_code == 200
    stale = await put(client, "tenant/ui", {"theme": "light"}, admin, version=0)
    assert stale.status_code == 409
    assert stale.headers["etag"] == '"1"'
    assert "version 1, not 0" in stale.json()["detail"]
    garbage = await client.put("/api/v1/tenant/ui", json={"theme": "x"}, headers={**admin, "If-Match": "abc"})
    assert garbage.status_code == 400
    gone = await client.delete("/api/v1/tenant/ui", headers={**admin, "If-Match": '"0"'})
    assert gone.status_code == 409
    deleted = await client.delete("/api/v1/tenant/ui", headers={**admin, "If-Match": '"1"'})
    assert deleted.status_code == 200
    assert deleted.json()["value"] is None
    assert deleted.json()["version"] == 2
    again = await client.delete("/api/v1/tenant/ui", headers={**admin, "If-Match": '"2"'})
    assert again.status_code == 404


async def test_bad_requests_are_4xx_with_reasons(
    client: httpx.AsyncClient, tokens: TokenService, tenants: Tenants
) -> None:
    admin = auth(tokens, "admin-a", "tenant_admin", tenant=tenants[0])
    invalid = await put(client, "tenant/risk", {"max_leverage": -1}, admin)
    assert invalid.status_code == 400
    assert "max_leverage" in invalid.json()["detail"]
    unknown_ns = await client.get("/api/v1/tenant/nope", headers=admin)
    assert unknown_ns.status_code == 404
    assert "risk" in unknown_ns.json()["detail"]
    assert (await client.get("/api/v1/team/risk", headers=admin)).status_code == 422
    not_object = await client.put("/api/v1/tenant/ui", json=[1], headers={**admin, "If-Match": "0"})
    assert not_object.status_code == 422
    user_risk = await put(
        client, "user/risk", {"max_leverage": 500}, auth(tokens, "u1", "portfolio_manager", tenant=tenants[0])
    )
    assert user_risk.status_code == 400
    foreign = await client.get(
        "/api/v1/tenant/ui", headers=auth(tokens, "x", "analyst"), params={"tenant": "zz"}
    )
    assert foreign.status_code == 403  # naming another tenant is for platform_admin only
    root = auth(tokens, "root", "platform_admin")
    not_uuid = await client.get("/api/v1/tenant/ui", headers=root, params={"tenant": "not-a-uuid"})
    assert not_uuid.status_code == 400
    assert "UUID" in not_uuid.json()["detail"]


async def test_effective_config_merges_scopes_for_the_caller_or_a_named_user(
    client: httpx.AsyncClient, tokens: TokenService, tenants: Tenants
) -> None:
    a = tenants[0]
    root = auth(tokens, "root", "platform_admin")
    admin = auth(tokens, "admin-a", "tenant_admin", tenant=a)
    trader = auth(tokens, "trader-1", "portfolio_manager", tenant=a)
    assert (await put(client, "global/trading", {"default_deviation_points": 20}, root)).status_code == 200
    assert (await put(client, "tenant/trading", {"default_filling": "IOC"}, admin)).status_code == 200
    assert (await put(client, "user/trading", {"default_deviation_points": 3}, trader)).status_code == 200
    mine = (await client.get("/api/v1/effective", headers=trader)).json()
    assert mine["tenant"] == str(a)
    assert mine["user"] == "trader-1"
    trading = mine["namespaces"]["trading"]
    assert trading["values"]["default_deviation_points"] == 3
    assert trading["values"]["default_filling"] == "IOC"
    assert trading["sources"]["default_deviation_points"] == "user"
    as_admin = (await client.get("/api/v1/effective", params={"user": "trader-1"}, headers=admin)).json()
    assert as_admin["namespaces"]["trading"] == trading
    assert (
        await client.get("/api/v1/effective", params={"user": "admin-a"}, headers=trader)
    ).status_code == 403
    global_only = (await client.get("/api/v1/effective", headers=root)).json()
    assert global_only["tenant"] is None
    assert global_only["namespaces"]["trading"]["values"]["default_deviation_points"] == 20
    assert global_only["namespaces"]["trading"]["values"]["default_filling"] == "FOK"
    of_tenant = await client.get("/api/v1/effective", params={"tenant": str(a)}, headers=root)
    assert of_tenant.json()["namespaces"]["trading"]["values"]["default_filling"] == "IOC"


async def test_history_shows_changes_with_diffs_to_those_who_may_read_the_scope(
    client: httpx.AsyncClient, tokens: TokenService, tenants: Tenants
) -> None:
    a = tenants[0]
    admin = auth(tokens, "admin-a", "tenant_admin", tenant=a)
    await put(client, "tenant/ui", {"theme": "dark"}, admin, 0)
    await put(client, "tenant/ui", {"theme": "light"}, admin, 1)
    analyst = auth(tokens, "ann", "analyst", tenant=a)
    body = (
        await client.get("/api/v1/history", params={"scope": "tenant", "namespace": "ui"}, headers=analyst)
    ).json()
    assert [(c["version"], c["actor"]) for c in body["changes"]] == [(2, "admin-a"), (1, "admin-a")]
    assert body["changes"][0]["diff"] == [{"op": "replace", "path": "/theme", "old": "dark", "new": "light"}]
    other = auth(tokens, "bob", "tenant_admin", tenant=tenants[1])
    assert (await client.get("/api/v1/history", headers=other)).json()["changes"] == []
    unknown = await client.get("/api/v1/history", params={"namespace": "nope"}, headers=admin)
    assert unknown.status_code == 404
    # Beyond SQLite's 64-bit integers: a 422 naming the parameter (was a 500 from an OverflowError).
    huge = await client.get("/api/v1/history", params={"before_version": 2**64}, headers=admin)
    assert huge.status_code == 422
    assert "before_version" in huge.text


# --- who may write which scope -----------------------------------------------------------------------------

CASES = [
    # (scope, roles, own tenant?, expected status)
    ("global", ("platform_admin",), False, 200),
    ("global", ("tenant_admin",), True, 403),
    ("global", ("analyst",), True, 403),
    ("tenant", ("tenant_admin",), True, 200),
    ("tenant", ("portfolio_manager",), True, 403),
    ("tenant", ("analyst",), True, 403),
    ("tenant", ("platform_admin",), True, 403),
    ("user", ("portfolio_manager",), True, 200),
    ("user", ("api_user",), True, 200),
    ("user", ("tenant_admin",), True, 200),
    ("user", ("analyst",), True, 403),
    ("user", (), True, 403),
    ("tenant", ("tenant_admin",), False, 400),  # a principal without a tenant has no tenant scope
]


@pytest.mark.parametrize(("scope", "roles", "with_tenant", "expected"), CASES)
async def test_write_permissions_by_role_and_scope(
    client: httpx.AsyncClient,
    tokens: TokenService,
    tenants: Tenants,
    scope: str,
    roles: tuple[str, ...],
    with_tenant: bool,
    expected: int,
) -> None:
    headers = auth(tokens, "someone", *roles, tenant=tenants[0] if with_tenant else None)
    resp = await put(client, f"{scope}/ui", {"theme": "dark"}, headers)
    assert resp.status_code == expected, resp.text


async def test_users_write_only_their_own_user_scope_and_admins_read_others(
    client: httpx.AsyncClient, tokens: TokenService, tenants: Tenants
) -> None:
    a = tenants[0]
    trader = auth(tokens, "trader-1", "portfolio_manager", tenant=a)
    other = auth(tokens, "trader-2", "portfolio_manager", tenant=a)
    admin = auth(tokens, "admin-a", "tenant_admin", tenant=a)
    assert (await put(client, "user/ui", {"theme": "dark"}, trader)).status_code == 200
    forged = await client.put(
        "/api/v1/user/ui",
        params={"user": "trader-1"},
        json={"theme": "light"},
        headers={**other, "If-Match": "1"},
    )
    assert forged.status_code == 403
    as_admin_write = await client.put(
        "/api/v1/user/ui",
        params={"user": "trader-1"},
        json={"theme": "light"},
        headers={**admin, "If-Match": "1"},
    )
    assert as_admin_write.status_code == 403
    assert (
        await client.get("/api/v1/user/ui", params={"user": "trader-1"}, headers=other)
    ).status_code == 403
    seen = await client.get("/api/v1/user/ui", params={"user": "trader-1"}, headers=admin)
    assert seen.status_code == 200
    assert seen.json()["value"] == {"theme": "dark"}
    assert (await client.get("/api/v1/user/ui", headers=other)).json()["value"] is None


async def test_tenants_cannot_read_each_others_config_but_platform_admins_can(
    client: httpx.AsyncClient, tokens: TokenService, tenants: Tenants
) -> None:
    a, b = tenants
    await put(client, "tenant/risk", {"max_leverage": 10}, auth(tokens, "admin-a", "tenant_admin", tenant=a))
    intruder = auth(tokens, "admin-b", "tenant_admin", tenant=b)
    assert (
        await client.get("/api/v1/tenant/risk", params={"tenant": str(a)}, headers=intruder)
    ).status_code == 403
    assert (await client.get("/api/v1/tenant/risk", headers=intruder)).json()["value"] is None
    root = auth(tokens, "root", "platform_admin")
    seen = await client.get("/api/v1/tenant/risk", params={"tenant": str(a)}, headers=root)
    assert seen.json()["value"] == {"max_leverage": 10}
    write_other = await client.put(
        "/api/v1/tenant/risk",
        params={"tenant": str(a)},
        json={"max_leverage": 1},
        headers={**root, "If-Match": "1"},
    )
    assert write_other.status_code == 403


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/effective"),
        ("GET", "/api/v1/history"),
        ("GET", "/api/v1/schema"),
        ("GET", "/api/v1/global/ui"),
        ("PUT", "/api/v1/global/ui"),
        ("DELETE", "/api/v1/global/ui"),
    ],
)
async def test_every_config_route_needs_a_token(client: httpx.AsyncClient, method: str, path: str) -> None:
    assert (await client.request(method, path)).status_code == 401


async def test_schema_lists_namespaces_with_defaults_and_scopes(
    client: httpx.AsyncClient, tokens: TokenService
) -> None:
    body = (await client.get("/api/v1/schema", headers=auth(tokens, "anyone"))).json()
    assert set(body["namespaces"]) == {"risk", "notifications", "ui", "trading"}
    assert body["namespaces"]["risk"]["scopes"] == ["global", "tenant"]
    assert body["namespaces"]["trading"]["defaults"]["default_filling"] == "FOK"
    assert "properties" in body["namespaces"]["ui"]["schema"]
