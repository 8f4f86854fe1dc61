"""Cross-tenant isolation over every route the gateway serves, derived from its OpenAPI document.

Tenant A gets real objects first (a trading account with an order, tenant and user config entries, an
API user with a key, more users). Then tenant B's strongest principals — its tenant admin with MFA, its
trading API key — call every operation of the gateway's document, with the proxy's `{path}` routes expanded
into the services' own operations as the all-in-one platform mounts them, every path parameter naming one
of A's objects and every `tenant`/`user` query parameter naming A. Nothing of A may come back (no answer
carries an identifier of A that the request did not already contain), no answer is a 5xx, and A's objects
are the same afterwards. A new route is covered as soon as it is in a document; a new path parameter
fails the test until it is mapped to one of A's objects below.
"""

from __future__ import annotations

import itertools
import json
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from gateway_platform import FEED, Platform, User, openapi_with_services, platform

from aitrading.engine.limits import RiskScope
from aitrading.model.ids import TenantId

pytestmark = pytest.mark.slow

ACCOUNT = "70001"
ORDER = "AcmeOrder1"
PARAM = re.compile(r"\{([A-Za-z_]+)(?::path)?\}")
METHODS = ("get", "put", "post", "patch", "delete")


@dataclass
class TenantA:
    tenant: uuid.UUID
    admin: User
    trader: User
    bot: User
    key_id: uuid.UUID
    markers: set[str]


@pytest.fixture
async def p(tmp_path: Path) -> AsyncIterator[Platform]:
    async with platform(tmp_path) as pp:
        yield pp


async def seed_tenant_a(p: Platform) -> TenantA:
    tenant = await p.tenant("acme")
    await p.trading_account(tenant, ACCOUNT)
    admin = await p.with_mfa(await p.user(tenant, "acme", "alice@acme.io", "tenant_admin"))
    trader = await p.with_mfa(await p.user(tenant, "acme", "tom@acme.io", "portfolio_manager"))
    bot = await p.user(tenant, "acme", "bot@acme.io", "api_user")
    await p.user(tenant, "acme", "ann@acme.io", "analyst")
    key_id, _ = await p.api_key(bot, ["read", "trade"])
    placed = await p.client.post(
        "/api/v1/engine/orders",
        headers=trader.auth,
        json={
            "account": ACCOUNT,
            "symbol": "EURUSD",
            "type": "BUY",
            "volume": "0.10",
            "client_order_id": ORDER,
        },
    )
    assert placed.status_code in (202, 422), placed.text
    for who, scope, value in ((admin, "tenant", "dark"), (admin, "user", "light")):
        put = await p.client.put(
            f"/api/v1/config/{scope}/ui", headers={**who.auth, "If-Match": "0"}, json={"theme": value}
        )
        assert put.status_code == 200, put.text
    markers = {str(tenant), str(key_id), ORDER, ACCOUNT, "acme"}
    markers |= {str(u.id) for u in (admin, trader, bot)} | {u.email for u in (admin, trader, bot)}
    return TenantA(tenant, admin, trader, bot, key_id, markers)


async def state_of_a(p: Platform, a: TenantA) -> dict[str, Any]:
    """Everything of A that B could have touched, read through A's own eyes and the stores."""
    book = p.engine.engine.book(str(a.tenant), ACCOUNT)
    assert book is not None
    orders = {str(k): (o.state.name, o.volume, o.price, o.sl, o.tp) for k, o in book.orders.items()}
    config = {}
    for who, scope in ((a.admin, "tenant"), (a.admin, "user")):
        resp = await p.client.get(f"/api/v1/config/{scope}/ui", headers=who.auth)
        assert resp.status_code == 200, resp.text
        config[scope] = resp.json()
    users = await p.identity.directory.list_users(a.tenant)
    keys = await p.identity.api_keys.list(a.tenant)
    sessions = [
        (await p.client.get("/api/v1/auth/me", headers=u.auth)).status_code for u in (a.admin, a.trader)
    ]
    return {
        "orders": orders,
        "risk_state": (book.risk_state, book.risk_reason),
        "positions": sorted(map(str, book.positions)),
        "limits": sorted(str(x) for x in p.engine.engine.risk.levels_of(TenantId(str(a.tenant)))),
        "config": config,
        "users": sorted((str(u.id), u.email, u.role, u.disabled) for u in users),
        "keys": sorted((str(k.id), str(k.revoked_at)) for k in keys),
        "sessions": sessions,
        "tenant": (await p.identity.directory.tenant(a.tenant)).model_dump(),
    }


def operations(p: Platform) -> list[tuple[str, str, dict[str, Any]]]:
    """(method, gateway path template, operation) of the gateway's document, proxy routes expanded."""
    paths = openapi_with_services(p)["paths"]
    return [(m, path, op) for path, item in paths.items() for m, op in item.items() if m in METHODS]


def path_values(a: TenantA, service: str, name: str) -> list[str]:
    """The values of a path parameter that name A's objects (several where a parameter picks a kind)."""
    values: dict[str, list[str]] = {
        "account": [ACCOUNT],
        "client_order_id": [ORDER],
        "identifier": ["1"],
        "key_id": [str(a.key_id)],
        "user_id": [str(a.trader.id), str(a.bot.id)],
        "namespace_name": ["ui"],
        "scope_id": [str(a.tenant), ACCOUNT],
        "scope": [s.value for s in RiskScope] if service == "engine" else ["tenant", "user"],
        # Platform-wide data, no tenant's objects: ml models, feature vectors of a feed (broker server).
        "ref": ["acme-model:1"],
        "feed": [FEED],
        "symbol": ["EURUSD"],
        "timeframe": ["M1"],
    }
    assert name in values, f"path parameter {name!r} ({service}) is not mapped to an object of tenant A"
    return values[name]


def body_for(method: str, path: str, a: TenantA) -> Any:
    """A schema-valid body aimed at A's objects, so the request gets past validation to the lookup."""
    bodies: dict[tuple[str, str], Any] = {
        ("post", "/api/v1/engine/orders"): {
            "account": ACCOUNT,
            "symbol": "EURUSD",
            "type": "SELL",
            "volume": "0.10",
            "client_order_id": ORDER,
        },
        ("patch", "/api/v1/engine/orders/{client_order_id}"): {"price": "1.05000"},
        ("post", "/api/v1/engine/accounts/{account}/positions/{identifier}/close"): {},
        ("put", "/api/v1/engine/risk/limits/{scope}/{scope_id}"): {"max_open_positions": 0},
        ("post", "/api/v1/engine/accounts/{account}/risk-state"): {"state": "HALTED", "reason": "B"},
        ("put", "/api/v1/config/{scope}/{namespace_name}"): {"theme": "system"},
        ("post", "/api/v1/auth/users"): {
            "email": "mole@acme.io",
            "password": "mole password 1234",
            "role": "tenant_admin",
        },
        ("post", "/api/v1/auth/keys"): {"user_id": str(a.bot.id), "name": "mole", "scopes": ["trade"]},
        ("post", "/api/v1/auth/login"): {
            "tenant": "acme",
            "email": a.trader.email,
            "password": "not the password",
        },
        ("post", "/api/v1/auth/refresh"): {"refresh_token": a.trader.refresh[:-4] + "AAAA"},
        ("post", "/api/v1/auth/logout"): {"refresh_token": "rt_" + "B" * 43},
    }
    if (method, path) in bodies:
        return bodies[(method, path)]
    return {"code": "000000"} if path.startswith("/api/v1/auth/mfa/") else None


def requests_for(
    a: TenantA, method: str, template: str, op: dict[str, Any]
) -> list[tuple[str, dict[str, str]]]:
    """Every concrete (path, query) of an operation: each mapped path value, with and without A named."""
    service = template.split("/")[3] if template.startswith("/api/v1/") else ""
    names = PARAM.findall(template)
    combos = itertools.product(*(path_values(a, service, n) for n in names)) if names else [()]
    query_names = {q["name"] for q in op.get("parameters", []) if q.get("in") == "query"}
    queries: list[dict[str, str]] = [{}]
    if "tenant" in query_names:
        queries.append({"tenant": str(a.tenant)})
    if "user" in query_names:
        queries.append({"user": str(a.admin.id)})
    out: list[tuple[str, dict[str, str]]] = []
    for combo in combos:
        path = template
        for name, value in zip(names, combo, strict=True):
            path = re.sub(r"\{" + name + r"(?::path)?\}", value, path, count=1)
        out.extend((path, q) for q in queries)
    return out


def names_a(a: TenantA, path: str) -> bool:
    """Whether the path names an object of A (a strategy id is B's own free-form name, not A's).

    Query parameters naming A are judged by what comes back only: a service may rightly answer B's own
    view (an API user's `GET /auth/keys?tenant=` lists its own keys; `?user=` in config looks in B's tenant).
    """
    ids = {ACCOUNT, ORDER, str(a.key_id), str(a.trader.id), str(a.bot.id)}
    return "/risk/limits/strategy/" not in path and any(i in path.split("/") for i in ids)


def leaked(a: TenantA, request: str, answer: str) -> set[str]:
    """A's identifiers in the answer that the request did not carry itself (an echo is not a leak).

    An identifier counts where it stands as a whole token, not inside a longer one: account 70001 is in
    `"account":"70001"`, not in a process start time of 1763770001.3 in `/metrics` (which made this test
    fail now and then).
    """
    return {m for m in a.markers if _token_in(m, answer) and m not in request}


def _token_in(marker: str, text: str) -> bool:
    return re.search(rf"(?<![0-9A-Za-z_.]){re.escape(marker)}(?![0-9A-Za-z_]|\.\d)", text) is not None


async def test_tenant_b_reaches_nothing_of_tenant_a_on_any_route(p: Platform) -> None:
    a = await seed_tenant_a(p)
    before = await state_of_a(p, a)
    b_tenant = await p.tenant("globex")
    b_admin = await p.with_mfa(await p.user(b_tenant, "globex", "bob@globex.io", "tenant_admin"))
    b_bot = await p.user(b_tenant, "globex", "bot@globex.io", "api_user")
    _, b_key = await p.api_key(b_bot, ["read", "trade"])
    ops = operations(p)
    assert {"/api/v1/engine/orders", "/api/v1/config/{scope}/{namespace_name}", "/api/v1/auth/users"} <= {
        path for _, path, _ in ops
    }
    tried: list[tuple[str, str, int]] = []
    problems: list[str] = []
    for method, template, op in ops:
        for path, query in requests_for(a, method, template, op):
            body = body_for(method, template, a)
            for who in ("admin", "key"):
                # If-Match names the version A's config entries have, should B ever reach them.
                headers = {**(b_admin.auth if who == "admin" else {"X-API-Key": b_key}), "If-Match": "1"}
                resp = await p.client.request(method.upper(), path, params=query, json=body, headers=headers)
                sent = f"{path} {json.dumps(query)} {json.dumps(body)}"
                tried.append((method, path, resp.status_code))
                if resp.status_code >= 500:
                    problems.append(
                        f"{who} {method.upper()} {path} {query}: {resp.status_code} {resp.text[:200]}"
                    )
                if names_a(a, path) and not 400 <= resp.status_code < 500:
                    problems.append(f"{who} {method.upper()} {path} {query}: {resp.status_code}, not refused")
                found = leaked(a, sent, resp.text)
                if found:
                    problems.append(f"{who} {method.upper()} {path} {query}: leaked {sorted(found)}")
                if (
                    who == "admin"
                    and (await p.client.get("/api/v1/auth/me", headers=b_admin.auth)).status_code != 200
                ):
                    await p.sign_in(b_admin)  # B logged itself out: sign in again (with TOTP: mfa=true)
    assert not problems, "\n".join(problems)
    assert len(tried) >= 2 * len(ops)
    assert await state_of_a(p, a) == before


def test_a_marker_counts_as_a_whole_token_only() -> None:
    assert _token_in("70001", '{"account":"70001","x":1}')
    assert _token_in("70001", "/api/v1/accounts/70001/positions")
    assert not _token_in("70001", "process_start_time_seconds 1.763770001e+09")
    assert not _token_in("70001", "aitrading_x_total 170001.0")
    assert not _token_in("70001", "process_resident_memory_bytes 70001.5")
