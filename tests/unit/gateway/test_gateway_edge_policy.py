"""The RBAC route table: roles per route, MFA step-up for trading and admin, scopes for keys, default deny."""

from __future__ import annotations

import pytest
from gateway_edge_helpers import SECRET, TENANT, FakeUpstream, bearer, client_of, make_gateway

from aitrading.common.auth import Principal, TokenService
from aitrading.gateway.policy import DEFAULT_POLICY, Grant, Policy, Rule, Verdict


def who(*roles: str, mfa: bool = False) -> Principal:
    return Principal("user:t", tenant=TENANT, roles=frozenset(roles), mfa=mfa)


ALLOW, DENY, MFA = Verdict.ALLOW, Verdict.DENY, Verdict.MFA_REQUIRED


@pytest.mark.parametrize(
    ("principal", "upstream", "method", "path", "verdict"),
    [
        (who("analyst"), "dbservice", "GET", "/ticks", ALLOW),
        (who("analyst"), "engine", "GET", "/orders/7", ALLOW),
        (who("analyst"), "engine", "POST", "/orders", DENY),
        (who("analyst", mfa=True), "config", "PUT", "/values/x", DENY),
        (who("portfolio_manager"), "engine", "POST", "/orders", MFA),
        (who("portfolio_manager", mfa=True), "engine", "POST", "/orders", ALLOW),
        (who("portfolio_manager", mfa=True), "engine", "DELETE", "/orders/7", ALLOW),
        (who("tenant_admin", mfa=True), "engine", "PATCH", "/orders/7", ALLOW),
        (who("api_user"), "engine", "POST", "/orders", DENY),
        (who("api_user", "scope:trade"), "engine", "POST", "/orders", ALLOW),
        (who("api_user", "scope:trade"), "config", "PUT", "/values/x", DENY),
        (who("api_user"), "dbservice", "GET", "/bars", ALLOW),
        (who("platform_admin", mfa=True), "engine", "POST", "/orders", DENY),
        (who("tenant_admin"), "hub", "GET", "/admin/users", MFA),
        (who("tenant_admin", mfa=True), "hub", "GET", "/admin/users", ALLOW),
        (who("platform_admin", mfa=True), "engine", "DELETE", "/admin/cache", ALLOW),
        (who("portfolio_manager", mfa=True), "hub", "GET", "/admin", DENY),
        (who("analyst"), "hub", "GET", "/admin/users", DENY),
        (who("tenant_admin"), "config", "PUT", "/values/x", MFA),
        (who("platform_admin", mfa=True), "dbservice", "POST", "/migrations", ALLOW),
        (who("tenant_admin", mfa=True), "dbservice", "POST", "/migrations", DENY),
        (who("portfolio_manager"), "notify", "POST", "/subscriptions", ALLOW),
        (who(), "dbservice", "GET", "/ticks", DENY),
        (who("svc:unknown-role"), "hub", "GET", "/errors", DENY),
        # Own user-scope config: anyone but an analyst; order defaults need step-up or the trade scope.
        (who("portfolio_manager"), "config", "PUT", "/user/ui", ALLOW),
        (who("api_user"), "config", "DELETE", "/user/ui", ALLOW),
        (who("portfolio_manager"), "config", "PUT", "/user/notifications", MFA),
        (who("portfolio_manager", mfa=True), "config", "PUT", "/user/notifications", ALLOW),
        (who("api_user"), "config", "PUT", "/user/notifications", DENY),
        (who("api_user", "scope:trade"), "config", "DELETE", "/user/notifications", ALLOW),
        (who("analyst", mfa=True), "config", "PUT", "/user/ui", DENY),
        (who("portfolio_manager"), "config", "PUT", "/user/trading", MFA),
        (who("portfolio_manager", mfa=True), "config", "PUT", "/user/trading", ALLOW),
        (who("api_user"), "config", "PUT", "/user/trading", DENY),
        (who("api_user", "scope:trade"), "config", "PUT", "/user/trading", ALLOW),
        (who("portfolio_manager", mfa=True), "config", "PUT", "/tenant/ui", DENY),
        (who("tenant_admin"), "config", "PUT", "/tenant/risk", MFA),
        (who("portfolio_manager"), "config", "POST", "/user/ui", DENY),
        # Predictions are reads with a body; other model writes need a trader with step-up.
        (who("analyst"), "ml", "POST", "/predict", ALLOW),
        (who("analyst"), "lstm", "POST", "/predict", ALLOW),
        (who("analyst", mfa=True), "ml", "POST", "/models", DENY),
        (who("portfolio_manager"), "lstm", "POST", "/models", MFA),
        (who("portfolio_manager", mfa=True), "lstm", "POST", "/models", ALLOW),
    ],
)
def test_the_default_route_table(
    principal: Principal, upstream: str, method: str, path: str, verdict: Verdict
) -> None:
    assert DEFAULT_POLICY.decide(principal, upstream, method, path).verdict is verdict


def test_a_route_no_rule_matches_is_denied_by_default() -> None:
    policy = Policy(
        [Rule("orders", "engine", frozenset({"GET"}), "/orders/{id}", (Grant(frozenset({"analyst"})),))]
    )
    assert policy.decide(who("analyst"), "engine", "GET", "/orders/7").allowed
    for upstream, method, path in [
        ("engine", "GET", "/orders"),
        ("engine", "GET", "/orders/7/fills"),
        ("engine", "POST", "/orders/7"),
        ("hub", "GET", "/orders/7"),
    ]:
        decision = policy.decide(who("analyst"), upstream, method, path)
        assert decision.verdict is Verdict.DENY
        assert decision.rule == "default-deny"
        assert "default deny" in decision.reason


def test_the_reason_names_the_roles_that_would_pass() -> None:
    decision = DEFAULT_POLICY.decide(who("analyst"), "engine", "POST", "/orders")
    assert decision.rule == "engine-trade"
    assert decision.reason == (
        "engine-trade needs one of the roles portfolio_manager, tenant_admin, api_user (with scope trade)"
    )


@pytest.mark.parametrize("pattern", ["orders", "/a/**/b", "/a/*", "/a/{b", "/a//b"])
def test_bad_path_patterns_are_refused(pattern: str) -> None:
    with pytest.raises(ValueError, match=r"pattern|segment"):
        Rule("r", "x", frozenset({"GET"}), pattern, ())


def test_unknown_methods_and_duplicate_rule_names_are_refused() -> None:
    with pytest.raises(ValueError, match="method"):
        Rule("r", "x", frozenset({"BREW"}), "/**", ())
    rule = Rule("r", "x", frozenset({"GET"}), "/**", ())
    with pytest.raises(ValueError, match="unique"):
        Policy([rule, rule])


@pytest.fixture
def tokens() -> TokenService:
    return TokenService(SECRET)


async def test_the_gateway_answers_403_with_the_reason_and_never_calls_the_upstream(
    tokens: TokenService,
) -> None:
    engine = FakeUpstream("engine", tokens)
    gw = make_gateway({"engine": engine}, tokens)
    async with client_of(gw) as client:
        denied = await client.post(
            "/api/v1/engine/orders", json={}, headers=bearer(tokens, roles=("analyst",))
        )
        step_up = await client.post(
            "/api/v1/engine/orders", json={}, headers=bearer(tokens, roles=("portfolio_manager",))
        )
        admin = await client.get("/api/v1/engine/admin/settings", headers=bearer(tokens, roles=("analyst",)))
    assert denied.status_code == 403
    assert denied.json()["reason"] == "denied"
    assert "www-authenticate" not in denied.headers
    assert step_up.status_code == 403
    assert step_up.json() == {
        "detail": "engine-trade needs a session with MFA step-up (TOTP)",
        "reason": "mfa_required",
    }
    assert 'error="insufficient_user_authentication"' in step_up.headers["www-authenticate"]
    assert admin.status_code == 403
    assert engine.calls == {}


async def test_an_api_key_with_the_trade_scope_trades_without_mfa(tokens: TokenService) -> None:
    engine = FakeUpstream("engine", tokens)
    gw = make_gateway({"engine": engine}, tokens)
    async with client_of(gw) as client:
        resp = await client.post(
            "/api/v1/engine/orders",
            json={"n": 1},
            headers=bearer(tokens, "key:9", roles=("api_user", "scope:trade")),
        )
    assert resp.status_code == 201
