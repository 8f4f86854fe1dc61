"""Schemathesis over the gateway's OpenAPI document (services' operations expanded), on the real platform.

The all-in-one platform runs in a background thread's event loop and serves HTTP on its ports, as `aitrading
up` does; schemathesis calls the gateway over HTTP as a signed-in tenant admin who proved TOTP (so writes
pass the route table and reach the services). Valid and invalid requests generated from the document must
never get a server error (5xx). Every 5xx is collected with its request so one run names all of them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from gateway_platform import Background, Platform, User, openapi_with_services, platform_in_background
from hypothesis import HealthCheck, given, settings

schemathesis = pytest.importorskip("schemathesis")

pytestmark = pytest.mark.slow


@pytest.fixture
def running(tmp_path: Path) -> Iterator[tuple[Background, Platform]]:
    with platform_in_background(tmp_path) as both:
        yield both


async def signed_in_admin(p: Platform) -> User:
    tenant = await p.tenant("acme")
    await p.trading_account(tenant, "70001")
    return await p.with_mfa(await p.user(tenant, "acme", "alice@acme.io", "tenant_admin"))


@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_no_route_of_the_gateway_answers_a_server_error(
    running: tuple[Background, Platform], mode: str
) -> None:
    bg, p = running
    admin = bg.run(signed_in_admin(p))
    base_url = f"http://127.0.0.1:{p.kernel.config.services.port('gateway')}"
    schema = schemathesis.openapi.from_dict(openapi_with_services(p))
    strategy = schema.as_strategy(generation_mode=schemathesis.GenerationMode(mode))
    errors: dict[str, str] = {}

    async def still_signed_in() -> None:
        # A generated logout ends the admin's session, and generated wrong passwords and TOTP codes throttle
        # the client IP or lock the admin: sign in again (waiting out or lifting that) to keep coverage.
        if (await p.client.get("/api/v1/auth/me", headers=admin.auth)).status_code == 200:
            return
        for _ in range(5):
            resp = await p.login(admin, code=p.code(admin))
            if resp.status_code == 200:
                admin.access, admin.refresh = resp.json()["access_token"], resp.json()["refresh_token"]
                return
            assert resp.status_code == 429, resp.text
            p.clock.advance(int(resp.headers["retry-after"]))
            await p.identity.directory.unlock_user(admin.tenant, admin.id, actor="test")
        raise AssertionError("the admin could not sign in again")

    @given(case=strategy)
    @settings(max_examples=400, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    def check(case: Any) -> None:
        bg.run(still_signed_in())
        response = case.call(base_url=base_url, headers=dict(admin.auth), timeout=30)
        if response.status_code >= 500:
            key = f"{case.method} {case.operation.path}"
            errors.setdefault(
                key,
                f"{response.status_code} {case.method} {response.request.url} "
                f"body={case.body!r} -> {response.text[:300]}",
            )

    check()
    assert not errors, "\n".join(errors.values())
