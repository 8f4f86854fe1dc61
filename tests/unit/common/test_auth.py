import jwt
import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient

from aitrading.common.auth import Principal, TokenService, principal_dependency
from aitrading.common.clock import TestClock

SECRET = "a-test-secret-of-enough-length-32b+"


def make() -> tuple[TokenService, TestClock, TestClient]:
    clock = TestClock()
    tokens = TokenService(SECRET, clock=clock)
    app = FastAPI()
    auth = principal_dependency(tokens)

    @app.get("/who")
    async def who(p: Principal = Depends(auth)) -> dict[str, object]:  # noqa: B008
        return {"sub": p.subject, "tenant": p.tenant, "roles": sorted(p.roles)}

    return tokens, clock, TestClient(app)


def test_valid_token_resolves_to_its_principal() -> None:
    tokens, _, client = make()
    token = tokens.issue("svc:bridge", tenant="t1", roles=["analyst"])
    resp = client.get("/who", headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 200
    assert resp.json() == {"sub": "svc:bridge", "tenant": "t1", "roles": ["analyst"]}


def test_missing_malformed_forged_expired_and_alg_none_tokens_get_401_with_a_reason() -> None:
    tokens, clock, client = make()
    good = tokens.issue("svc", ttl_s=60)
    forged = TokenService("another-secret-entirely-x-of-32-bytes", clock=clock).issue("svc")
    unsigned = jwt.encode(
        {"sub": "svc", "iss": "aitrading", "aud": "aitrading", "exp": 2**40, "iat": 0},
        key=None,
        algorithm="none",
    )
    wrong_aud = jwt.encode(
        {"sub": "svc", "iss": "aitrading", "aud": "other", "exp": 2**40, "iat": 0}, SECRET, algorithm="HS256"
    )
    cases = {
        "": "missing bearer token",
        "Basic abc": "missing bearer token",
        "Bearer not.a.jwt": "invalid token",
        f"Bearer {forged}": "Signature verification failed",
        f"Bearer {unsigned}": "invalid token",
        f"Bearer {wrong_aud}": "Audience",
    }
    for header, reason in cases.items():
        resp = client.get("/who", headers={"Authorization": header} if header else {})
        assert resp.status_code == 401, header
        assert reason in resp.json()["detail"], (header, resp.json())
    clock.advance(120)
    resp = client.get("/who", headers={"Authorization": f"Bearer {good}"})
    assert resp.status_code == 401
    assert "expired" in resp.json()["detail"]


def test_short_secrets_and_overlong_lifetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 32"):
        TokenService("short")
    with pytest.raises(ValueError, match="ttl_s"):
        TokenService(SECRET).issue("svc", ttl_s=10**7)
