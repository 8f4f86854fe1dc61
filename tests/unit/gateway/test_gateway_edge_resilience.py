"""Timeouts, retries with backoff, circuit breakers and bulkheads: an upstream in trouble is never a 500."""

from __future__ import annotations

import asyncio
import socket

import pytest
from gateway_edge_helpers import SECRET, FakeUpstream, bearer, client_of, make_gateway

from aitrading.common import metrics
from aitrading.common.auth import TokenService, principal_dependency
from aitrading.common.clock import TestClock
from aitrading.gateway.breaker import Breaker, BreakerState, Bulkhead
from aitrading.gateway.config import BreakerConfig, BulkheadConfig, GatewayConfig, RetryConfig
from aitrading.gateway.service import GatewayService

FAST_RETRY = RetryConfig(attempts=3, initial_s=0.001, max_s=0.002, jitter_s=0.001)


@pytest.fixture
def tokens() -> TokenService:
    return TokenService(SECRET)


@pytest.fixture
def engine(tokens: TokenService) -> FakeUpstream:
    return FakeUpstream("engine", tokens)


@pytest.fixture
def hub(tokens: TokenService) -> FakeUpstream:
    return FakeUpstream("hub", tokens)


def trader(tokens: TokenService) -> dict[str, str]:
    return bearer(tokens, roles=("portfolio_manager",), mfa=True)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_an_unreachable_upstream_is_a_502_with_the_reason(tokens: TokenService) -> None:
    gw = GatewayService(
        {"hub": f"http://127.0.0.1:{_closed_port()}"},
        tokens=tokens,
        authenticate=principal_dependency(tokens),
        config=GatewayConfig(retry=FAST_RETRY),
    )
    await gw.start()
    try:
        async with client_of(gw) as client:
            resp = await client.get("/api/v1/hub/whoami", headers=bearer(tokens))
    finally:
        await gw.stop()
    assert resp.status_code == 502
    assert resp.json()["reason"] == "upstream_unreachable"
    assert "ConnectError" in resp.json()["detail"]
    assert gw.upstreams["hub"].breaker.consecutive_failures == 3  # every attempt counted


@pytest.mark.parametrize("over_http", [False, True], ids=["in-process", "http"])
async def test_a_slow_upstream_is_a_504_after_its_own_timeout(
    tokens: TokenService, hub: FakeUpstream, over_http: bool
) -> None:
    hub.delay_s = 5.0
    config = GatewayConfig(timeout_s=0.05, retry=RetryConfig(attempts=1))
    gw = make_gateway({"hub": hub}, tokens, config=config, over_http=over_http)
    async with client_of(gw) as client:
        started = asyncio.get_running_loop().time()
        resp = await client.get("/api/v1/hub/slow", headers=bearer(tokens))
        took = asyncio.get_running_loop().time() - started
    assert resp.status_code == 504
    assert resp.json() == {
        "detail": "upstream hub did not answer within 0.05 s",
        "reason": "upstream_timeout",
    }
    assert took < 2.0


async def test_per_upstream_timeouts_override_the_default(tokens: TokenService, hub: FakeUpstream) -> None:
    hub.delay_s = 0.2
    config = GatewayConfig(timeout_s=0.05, timeouts_s={"hub": 2.0}, retry=RetryConfig(attempts=1))
    gw = make_gateway({"hub": hub}, tokens, config=config)
    async with client_of(gw) as client:
        resp = await client.get("/api/v1/hub/slow", headers=bearer(tokens))
    assert resp.status_code == 200


@pytest.mark.parametrize("over_http", [False, True], ids=["in-process", "http"])
async def test_an_idempotent_get_is_retried_until_the_upstream_answers(
    tokens: TokenService, hub: FakeUpstream, over_http: bool
) -> None:
    hub.fail_next = 2
    gw = make_gateway({"hub": hub}, tokens, config=GatewayConfig(retry=FAST_RETRY), over_http=over_http)
    async with client_of(gw) as client:
        resp = await client.get("/api/v1/hub/flaky", headers=bearer(tokens))
    assert resp.status_code == 200
    assert resp.json() == {"ok": True}
    assert hub.calls["flaky"] == 3


async def test_retries_stop_after_the_configured_attempts_and_pass_the_last_answer_on(
    tokens: TokenService, hub: FakeUpstream
) -> None:
    hub.fail_next = 10
    gw = make_gateway({"hub": hub}, tokens, config=GatewayConfig(retry=FAST_RETRY))
    async with client_of(gw) as client:
        resp = await client.get("/api/v1/hub/flaky", headers=bearer(tokens))
    assert resp.status_code == 503
    assert resp.json() == {"detail": "temporarily failing"}
    assert hub.calls["flaky"] == 3


async def test_retries_wait_with_exponential_backoff_on_the_clock(
    tokens: TokenService, hub: FakeUpstream
) -> None:
    clock = TestClock()
    hub.fail_next = 10
    retry = RetryConfig(attempts=4, initial_s=0.1, max_s=10.0, jitter_s=0.0)
    gw = make_gateway({"hub": hub}, tokens, clock=clock, config=GatewayConfig(retry=retry))
    before = clock.monotonic_ns()
    async with client_of(gw) as client:
        await client.get("/api/v1/hub/flaky", headers=bearer(tokens))
    waited_s = (clock.monotonic_ns() - before) / 1e9
    assert hub.calls["flaky"] == 4
    assert waited_s == pytest.approx(0.1 + 0.2 + 0.4)  # three waits, doubling


async def test_a_post_without_idempotency_key_is_never_retried(
    tokens: TokenService, engine: FakeUpstream
) -> None:
    engine.fail_next = 1
    gw = make_gateway({"engine": engine}, tokens, config=GatewayConfig(retry=FAST_RETRY))
    async with client_of(gw) as client:
        resp = await client.post("/api/v1/engine/orders", json={"n": 1}, headers=trader(tokens))
    assert resp.status_code == 503
    assert engine.calls["orders"] == 1


async def test_a_post_with_an_idempotency_key_is_retried(tokens: TokenService, engine: FakeUpstream) -> None:
    engine.fail_next = 1
    gw = make_gateway({"engine": engine}, tokens, config=GatewayConfig(retry=FAST_RETRY))
    headers = trader(tokens) | {"Idempotency-Key": "order-7f3a"}
    async with client_of(gw) as client:
        resp = await client.post("/api/v1/engine/orders", json={"n": 1}, headers=headers)
    assert resp.status_code == 201
    assert resp.json()["accepted"] == {"n": 1}
    assert engine.calls["orders"] == 2


async def test_the_breaker_opens_at_the_threshold_and_then_refuses_at_once_with_retry_after(
    tokens: TokenService, hub: FakeUpstream
) -> None:
    clock = TestClock()
    config = GatewayConfig(
        retry=RetryConfig(attempts=1), breaker=BreakerConfig(failure_threshold=3, reset_timeout_s=30)
    )
    gw = make_gateway({"hub": hub}, tokens, clock=clock, config=config)
    hub.fail_next = 100
    async with client_of(gw) as client:
        for _ in range(3):
            assert (await client.get("/api/v1/hub/flaky", headers=bearer(tokens))).status_code == 503
        assert gw.upstreams["hub"].breaker.state is BreakerState.OPEN
        clock.advance(10)
        refused = await client.get("/api/v1/hub/flaky", headers=bearer(tokens))
        assert hub.calls["flaky"] == 3  # the open breaker did not call the upstream
        assert refused.status_code == 503
        assert refused.json()["reason"] == "breaker_open"
        assert refused.headers["retry-after"] == "20"

        shown = (await client.get("/api/v1/gateway/upstreams", headers=bearer(tokens))).json()
        assert shown["hub"]["breaker"] == {"state": "open", "consecutive_failures": 3, "retry_after_s": 20}
        exported = metrics.render().decode()
        assert 'aitrading_gateway_breaker_state{upstream="hub"} 2.0' in exported

        clock.advance(20)  # half-open: one trial call goes through; it works, so the breaker closes
        hub.fail_next = 0
        assert (await client.get("/api/v1/hub/flaky", headers=bearer(tokens))).status_code == 200
        assert gw.upstreams["hub"].breaker.state is BreakerState.CLOSED
        assert 'aitrading_gateway_breaker_state{upstream="hub"} 0.0' in metrics.render().decode()


def test_a_failed_trial_call_reopens_the_breaker_for_another_reset_timeout() -> None:
    clock = TestClock()
    breaker = Breaker("x", clock, failure_threshold=2, reset_timeout_s=5, half_open_max_calls=1)
    breaker.record_failure()
    assert breaker.state is BreakerState.CLOSED
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN
    assert not breaker.allow()
    clock.advance(5)
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.allow()
    assert not breaker.allow()  # only one trial at a time
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN
    assert breaker.retry_after_s() == 5


def test_an_abandoned_trial_call_frees_its_slot() -> None:
    clock = TestClock()
    breaker = Breaker("y", clock, failure_threshold=1, reset_timeout_s=1)
    breaker.record_failure()
    clock.advance(1)
    assert breaker.allow()
    breaker.record_abandoned()
    assert breaker.allow()


def test_a_success_resets_the_count_of_consecutive_failures() -> None:
    breaker = Breaker("z", TestClock(), failure_threshold=3)
    breaker.record_failure()
    breaker.record_failure()
    breaker.record_success()
    breaker.record_failure()
    breaker.record_failure()
    assert breaker.state is BreakerState.CLOSED


async def test_a_full_trading_bulkhead_refuses_trading_but_analytics_still_flows(
    tokens: TokenService, engine: FakeUpstream, hub: FakeUpstream
) -> None:
    engine.delay_s = 0.5
    config = GatewayConfig(bulkhead=BulkheadConfig(trading_max_in_flight=2, analytics_max_in_flight=2))
    gw = make_gateway({"engine": engine, "hub": hub}, tokens, config=config)
    async with client_of(gw) as client:
        slow = [
            asyncio.create_task(client.get("/api/v1/engine/slow", headers=bearer(tokens))) for _ in range(2)
        ]
        for _ in range(400):  # both slow calls are inside the engine's bulkhead within a few ticks
            if gw.upstreams["engine"].bulkhead.in_flight == 2:
                break
            await asyncio.sleep(0.005)
        refused = await client.get("/api/v1/engine/slow", headers=bearer(tokens))
        analytics = await client.get("/api/v1/hub/whoami", headers=bearer(tokens))
        shown = (await client.get("/api/v1/gateway/upstreams", headers=bearer(tokens))).json()
        done = await asyncio.gather(*slow)
    assert refused.status_code == 503
    assert refused.json() == {
        "detail": "too many trading calls in flight (2); retry shortly",
        "reason": "bulkhead_full",
    }
    assert refused.headers["retry-after"] == "1"
    assert analytics.status_code == 200
    assert shown["engine"]["pool"] == "trading"
    assert shown["engine"]["bulkhead"] == {"in_flight": 2, "max_in_flight": 2}
    assert shown["hub"]["pool"] == "analytics"
    assert [r.status_code for r in done] == [200, 200]
    assert gw.upstreams["engine"].bulkhead.in_flight == 0


def test_a_bulkhead_gives_slots_back() -> None:
    pool = Bulkhead("p", 1)
    assert pool.try_acquire()
    assert not pool.try_acquire()
    pool.release()
    assert pool.try_acquire()


async def test_the_upstreams_route_needs_a_credential(tokens: TokenService, hub: FakeUpstream) -> None:
    gw = make_gateway({"hub": hub}, tokens)
    async with client_of(gw) as client:
        anonymous = await client.get("/api/v1/gateway/upstreams")
        roleless = await client.get("/api/v1/gateway/upstreams", headers=bearer(tokens, roles=()))
    assert anonymous.status_code == 401
    assert roleless.status_code == 403
