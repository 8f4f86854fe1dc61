"""Property-based checks of the gateway from its own OpenAPI document (schemathesis): never a 5xx.

Requests generated from the schema, valid and invalid, go through the whole edge (auth, rate limits, route
table, proxy) to real services behind it, with a token allowed to read everywhere. No answer may be a
server error, and every answer must fit the documented status codes. As in the dbservice check, "schema-
valid data is accepted" is off: the proxy's `{path}` is any text, and a service rightly answers 404 for a
path it does not have. The schema is loaded from the app and driven through `as_strategy` because
schemathesis's lazy fixture loader does not run under pytest 9.
"""

from __future__ import annotations

from typing import Any

import pytest
from gateway_edge_helpers import SECRET, FakeUpstream, bearer, make_gateway
from hypothesis import HealthCheck, given, settings

from aitrading.common.auth import TokenService
from aitrading.gateway.config import GatewayConfig, RateLimitConfig, TierLimits

schemathesis = pytest.importorskip("schemathesis")


@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_the_gateway_never_answers_5xx_and_keeps_its_documented_contract(mode: str) -> None:
    tokens = TokenService(SECRET)
    upstreams = {name: FakeUpstream(name, tokens) for name in ("engine", "hub", "dbservice")}
    config = GatewayConfig(
        rate_limit=RateLimitConfig(
            tiers={"t": TierLimits(per_principal="100000/minute", per_tenant="100000/minute")},
            default_tier="t",
        )
    )
    gateway = make_gateway(upstreams, tokens, config=config)
    schema = schemathesis.openapi.from_asgi("/openapi.json", gateway.app).include(path_regex="^/api/v1/")
    strategy = schema.as_strategy(generation_mode=schemathesis.GenerationMode(mode))
    headers = bearer(tokens, roles=("analyst",))

    @given(case=strategy)
    @settings(max_examples=150, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    def check(case: Any) -> None:
        response = case.call_and_validate(
            headers=headers, excluded_checks=[schemathesis.checks.positive_data_acceptance]
        )
        assert response.status_code < 500, response.text

    check()
