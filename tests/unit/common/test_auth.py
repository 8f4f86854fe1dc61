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


class _CountingDecode:
    """Counts PyJWT decodes, i.e. full verifications, while delegating to the real one."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        real = jwt.decode

        def decode(*args: object, **kwargs: object) -> object:
            self.calls += 1
            return real(*args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(jwt, "decode", decode)


def test_a_verified_token_is_served_from_the_cache_until_it_expires(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = TestClock()
    tokens = TokenService(SECRET, clock=clock, leeway_s=5)
    decodes = _CountingDecode(monkeypatch)
    token = tokens.issue("svc", tenant="t1", roles=["analyst"], ttl_s=60)
    first = tokens.verify(token)
    for _ in range(5):
        assert tokens.verify(token) == first
    assert decodes.calls == 1  # once in full, then from the cache
    clock.advance(64)  # still within exp + leeway
    assert tokens.verify(token) == first
    clock.advance(2)  # past exp + leeway: the cached entry no longer passes
    with pytest.raises(jwt.ExpiredSignatureError):
        tokens.verify(token)


def test_the_cache_never_accepts_a_text_it_did_not_verify(monkeypatch: pytest.MonkeyPatch) -> None:
    tokens = TokenService(SECRET, clock=TestClock())
    token = tokens.issue("svc", tenant="t1", roles=["analyst"])
    tokens.verify(token)
    header, payload, signature = token.split(".")
    forged_payload = jwt.utils.base64url_encode(
        jwt.utils.base64url_decode(payload).replace(b'"t1"', b'"t2"')
    ).decode()
    for tampered in (f"{header}.{forged_payload}.{signature}", token + "x", token[:-2]):
        with pytest.raises(jwt.InvalidTokenError):
            tokens.verify(tampered)
    assert tokens.verify(token).tenant == "t1"


def test_the_cache_is_bounded_and_can_be_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = TestClock()
    bounded = TokenService(SECRET, clock=clock, cache_entries=2)
    issued = [bounded.issue(f"svc{i}") for i in range(5)]
    for _ in range(2):
        assert [bounded.verify(t).subject for t in issued] == [f"svc{i}" for i in range(5)]
    assert len(bounded._verified) <= 2
    off = TokenService(SECRET, clock=clock, cache_entries=0)
    decodes = _CountingDecode(monkeypatch)
    token = off.issue("svc")
    for _ in range(3):
        off.verify(token)
    assert decodes.calls == 3
