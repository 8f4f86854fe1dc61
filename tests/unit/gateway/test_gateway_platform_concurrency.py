"""Concurrent sign-ins, refreshes and audited refusals on the embedded database never answer a 5xx.

SQLite has one writer at a time, and a transaction that read first and then writes fails at once
("database is locked", SQLITE_BUSY_SNAPSHOT: no waiting) when another connection committed in between.
Identity's logins and refreshes, and every audit append (read the chain's head, insert), are such
transactions; `Database` therefore begins SQLite transactions with `BEGIN IMMEDIATE`.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import pytest
from gateway_platform import User, platform

pytestmark = pytest.mark.slow


async def test_concurrent_logins_refreshes_and_audited_refusals_never_fail_on_the_database(
    tmp_path: Path,
) -> None:
    async with platform(tmp_path) as p:
        tenant = await p.tenant("acme")
        users = [await p.user(tenant, "acme", f"u{i}@acme.io", "analyst") for i in range(3)]
        trader = await p.user(tenant, "acme", "pm@acme.io", "portfolio_manager")

        async def refused_trade() -> int:  # audited by the gateway's background writer
            return (await p.client.post("/api/v1/engine/orders", headers=trader.auth, json={})).status_code

        async def login(user: User) -> int:
            return (await p.login(user)).status_code

        async def refresh(user: User) -> int:
            resp = await p.client.post("/api/v1/auth/refresh", json={"refresh_token": user.refresh})
            if resp.status_code == 200:
                user.refresh = resp.json()["refresh_token"]
            return resp.status_code

        answers = await asyncio.gather(
            *(refused_trade() for _ in range(5)),
            *(login(u) for u in users),
            *(refresh(u) for u in users),
            return_exceptions=True,
        )
        # A 500 surfaces as the app's exception (httpx's ASGI transport raises it): count it by name.
        seen = Counter(a if isinstance(a, int) else type(a).__name__ for a in answers)
        assert seen == Counter({403: 5, 200: 6}), seen
