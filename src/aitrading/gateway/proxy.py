"""The proxy: `/api/v1/<service>/<rest>` → the service's `/api/v1/<rest>`, through every check of the edge.

Per request, in order: a path without dot segments (400), authentication (401), rate limits of the
principal and its tenant (429), the RBAC route table (403), the request body up to `max_body_bytes` (413),
a slot in the bulkhead of its traffic class (503), the upstream's circuit breaker (503 with `Retry-After`),
then the call with its per-upstream timeout. Idempotent calls (GET/HEAD/OPTIONS, or any call carrying an
`Idempotency-Key`) are retried on timeouts, unreachable upstreams and 502/503/504, with exponential backoff
and jitter (tenacity). An upstream that gives no answer is a 502 (unreachable, failed) or 504 (timeout) with
the reason, never a 500. Answers stream back unbuffered with the request id and rate-limit headers.

The hot path avoids per-request allocations it can: no JWT is signed per request (`UpstreamTokens`), the
first attempt runs without the retry machinery (which only starts after a retryable failure), and the
handler is a raw ASGI app behind a FastAPI route that exists for routing and the OpenAPI document.
"""

from __future__ import annotations

import json
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import structlog
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_result,
    stop_after_attempt,
    wait_exponential_jitter,
)

from aitrading.common.auth import Principal
from aitrading.common.clock import Clock
from aitrading.gateway.audit import SecurityAuditor
from aitrading.gateway.config import RetryConfig
from aitrading.gateway.middleware import REQUEST_ID_KEY, new_request_id
from aitrading.gateway.policy import READ_METHODS, Policy, Verdict
from aitrading.gateway.ratelimit import TenantRateLimiter
from aitrading.gateway.upstream import Failure, OutgoingRequest, Upstream, UpstreamTokens

__all__ = ["Authenticate", "Proxy", "error_body"]

_log = structlog.get_logger("gateway.proxy")

Authenticate = Callable[[Request], Awaitable[Principal]]
"""Turns a request into its principal or raises `HTTPException(401)`: the identity service's contract."""

RETRY_STATUSES = frozenset({502, 503, 504})
BREAKER_FAILURE_STATUSES = frozenset({500, 502, 503, 504})

_DROP_REQUEST_HEADERS = frozenset(
    {
        b"authorization",  # replaced by the gateway's own service token
        b"cookie",  # a session or refresh cookie is a credential too
        b"x-api-key",
        b"host",
        b"content-length",
        b"x-request-id",
        b"x-forwarded-for",
        b"x-forwarded-proto",
        b"x-forwarded-host",
        b"forwarded",
        b"connection",
        b"keep-alive",
        b"transfer-encoding",
        b"te",
        b"trailer",
        b"upgrade",
        b"proxy-authorization",
        b"proxy-connection",
    }
)
_DROP_RESPONSE_HEADERS = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"transfer-encoding",
        b"te",
        b"trailer",
        b"upgrade",
        b"proxy-connection",
        b"server",
        b"date",
        b"x-request-id",
        b"ratelimit-limit",
        b"ratelimit-remaining",
        b"ratelimit-reset",
    }
)
_JSON = (b"content-type", b"application/json")
_STEP_UP = b'Bearer error="insufficient_user_authentication", error_description="MFA step-up required"'


def error_body(detail: str, reason: str) -> bytes:
    """Return the JSON body of a gateway error: what happened and a stable reason code."""
    return json.dumps({"detail": detail, "reason": reason}).encode()


async def _answer(
    send: Any, status: int, detail: str, reason: str, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = error_body(detail, reason)
    out = [_JSON, (b"content-length", str(len(body)).encode())]
    if headers:
        out.extend(headers)
    await send({"type": "http.response.start", "status": status, "headers": out})
    await send({"type": "http.response.body", "body": body, "more_body": False})


@dataclass(slots=True)
class _Outcome:
    status: int = 0
    forwarded: bool = False
    failure: Failure | None = None

    @property
    def retryable(self) -> bool:
        if self.forwarded:
            return False
        if self.failure is not None:
            return self.failure.kind in ("timeout", "unreachable")
        return self.status in RETRY_STATUSES


class _Relay:
    """Passes an upstream answer to the client, unless it is a retryable failure and attempts remain."""

    __slots__ = ("extra", "final", "forwarded", "send")

    def __init__(self, send: Any, extra: list[tuple[bytes, bytes]]) -> None:
        self.send = send
        self.extra = extra
        self.final = False
        self.forwarded = False

    async def start(self, status: int, headers: list[tuple[bytes, bytes]]) -> bool:
        if not self.final and status in RETRY_STATUSES:
            return False
        out = [(k, v) for k, v in headers if k not in _DROP_RESPONSE_HEADERS]
        out.extend(self.extra)
        self.forwarded = True
        await self.send({"type": "http.response.start", "status": status, "headers": out})
        return True

    async def body(self, chunk: bytes, more: bool) -> None:
        await self.send({"type": "http.response.body", "body": chunk, "more_body": more})


class Proxy:
    """Routes `/api/v1/<service>/...` to the services, enforcing the edge's checks (see module doc)."""

    def __init__(
        self,
        upstreams: dict[str, Upstream],
        *,
        authenticate: Authenticate,
        policy: Policy,
        limiter: TenantRateLimiter,
        tokens: UpstreamTokens,
        auditor: SecurityAuditor,
        retry: RetryConfig,
        max_body_bytes: int,
        clock: Clock,
    ) -> None:
        self.upstreams = upstreams
        self._authenticate = authenticate
        self._policy = policy
        self._limiter = limiter
        self._tokens = tokens
        self._auditor = auditor
        self._attempts = retry.attempts
        self._wait = wait_exponential_jitter(
            multiplier=retry.initial_s, max=retry.max_s, jitter=retry.jitter_s
        )
        self._max_body = max_body_bytes
        self._sleep = clock.sleep

    def asgi(self, name: str) -> ASGIApp:
        """Return the ASGI handler of the routes under `/api/v1/<name>/`."""
        upstream = self.upstreams[name]
        prefix = f"/api/v1/{name}"
        raw_prefix = prefix.encode()

        async def handle(scope: Scope, receive: Receive, send: Send) -> None:
            await self._handle(upstream, prefix, raw_prefix, scope, receive, send)

        return handle

    async def _handle(
        self,
        upstream: Upstream,
        prefix: str,
        raw_prefix: bytes,
        scope: Scope,
        receive: Any,
        send: Any,
    ) -> None:
        rest: str = scope["path"][len(prefix) :] or "/"
        if "/./" in rest + "/" or "/../" in rest + "/":
            upstream.count("bad_path")
            await _answer(send, 400, "the path must not contain '.' or '..' segments", "bad_path")
            return
        request_id: str = scope.get(REQUEST_ID_KEY) or new_request_id()
        admitted = await self._admit(upstream, rest, request_id, scope, receive, send)
        if admitted is None:
            return
        principal, rate_headers = admitted
        body = await self._read_body(scope, receive)
        if body is None:
            upstream.count("too_large")
            await _answer(
                send, 413, f"request bodies are limited to {self._max_body} bytes", "too_large", rate_headers
            )
            return
        bulkhead = upstream.bulkhead
        if not bulkhead.try_acquire():
            upstream.count("bulkhead_full")
            await _answer(
                send,
                503,
                f"too many {bulkhead.pool} calls in flight ({bulkhead.max_in_flight}); retry shortly",
                "bulkhead_full",
                [*rate_headers, (b"retry-after", b"1")],
            )
            return
        try:
            request = self._outgoing(scope, receive, raw_prefix, rest, body, principal, request_id)
            relay = _Relay(send, rate_headers)
            method = scope["method"]
            idempotent = method in READ_METHODS or any(k == b"idempotency-key" for k, _ in scope["headers"])
            attempts = self._attempts if idempotent else 1
            started = time.perf_counter()
            outcome = await self._attempt(upstream, request, relay, final=attempts == 1)
            if outcome.retryable and attempts > 1:
                outcome = await self._retry(upstream, request, relay, outcome, attempts)
            upstream.observe(time.perf_counter() - started)
        finally:
            bulkhead.release()
        if outcome.forwarded:
            upstream.count(f"{outcome.status // 100}xx")
            return
        await self._fail(upstream, outcome, send, rate_headers)

    async def _admit(
        self, upstream: Upstream, rest: str, request_id: str, scope: Scope, receive: Any, send: Any
    ) -> tuple[Principal, list[tuple[bytes, bytes]]] | None:
        """Authenticate, count against the rate limits and check the route table; None: answered already."""
        method: str = scope["method"]
        try:
            principal = await self._authenticate(Request(scope, receive))
        except HTTPException as exc:
            upstream.count("unauthenticated")
            headers = [(k.lower().encode(), v.encode()) for k, v in (exc.headers or {}).items()]
            await _answer(send, exc.status_code, str(exc.detail), "unauthenticated", headers)
            return None
        except Exception as exc:  # the identity store failing is an outage of the edge, not a crash
            upstream.count("auth_unavailable")
            _log.error("authentication_failed", error=f"{type(exc).__name__}: {exc}"[:300])
            await _answer(
                send,
                503,
                "authentication is unavailable; retry shortly",
                "auth_unavailable",
                [(b"retry-after", b"1")],
            )
            return None

        rate = await self._limiter.check(principal)
        rate_headers = rate.headers() if rate is not None else []
        if rate is not None and not rate.allowed:
            upstream.count("rate_limited")
            self._auditor.record(
                principal,
                "gateway.rate_limited",
                {"method": method, "path": scope["path"], "scope": rate.scope, "request_id": request_id},
            )
            detail = (
                f"rate limit of the {rate.scope} exceeded ({rate.limit} per window); "
                f"retry after {rate.reset_s} s"
            )
            await _answer(send, 429, detail, "rate_limited", rate_headers)
            return None

        decision = self._policy.decide(principal, upstream.name, method, rest)
        if decision.allowed:
            return principal, rate_headers
        mfa = decision.verdict is Verdict.MFA_REQUIRED
        upstream.count(decision.verdict.value)
        self._auditor.record(
            principal,
            "gateway.mfa_required" if mfa else "gateway.rbac_denied",
            {
                "method": method,
                "path": scope["path"],
                "rule": decision.rule,
                "roles": sorted(principal.roles),
                "request_id": request_id,
            },
        )
        headers = list(rate_headers)
        if mfa:
            headers.append((b"www-authenticate", _STEP_UP))
        await _answer(send, 403, decision.reason, decision.verdict.value, headers)
        return None

    async def _read_body(self, scope: Scope, receive: Any) -> bytes | None:
        """Return the whole request body, or None when it is larger than allowed."""
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    if int(value) > self._max_body:
                        return None
                except ValueError:
                    return None
                if value == b"0":
                    return b""
                break
        else:
            if scope["method"] in READ_METHODS:
                return b""  # no length and a method without a body: nothing to wait for
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self._max_body:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    def _outgoing(
        self,
        scope: Scope,
        receive: Any,
        raw_prefix: bytes,
        rest: str,
        body: bytes,
        principal: Principal,
        request_id: str,
    ) -> OutgoingRequest:
        raw_path: bytes = scope.get("raw_path") or b""
        if raw_path.startswith(raw_prefix + b"/"):
            raw_rest = raw_path[len(raw_prefix) :]
        else:  # the service name itself was percent-encoded: re-encode the decoded rest
            raw_rest = urllib.parse.quote(rest).encode()
        headers = [(k, v) for k, v in scope["headers"] if k not in _DROP_REQUEST_HEADERS]
        headers.append((b"authorization", self._tokens.authorization(principal)))
        headers.append((b"x-request-id", request_id.encode()))
        if body or scope["method"] not in READ_METHODS:
            headers.append((b"content-length", str(len(body)).encode()))
        client = scope.get("client")
        if client:
            headers.append((b"x-forwarded-for", client[0].encode()))
        headers.append((b"x-forwarded-proto", scope.get("scheme", "http").encode()))
        return OutgoingRequest(
            method=scope["method"],
            path="/api/v1" + rest,
            raw_path=b"/api/v1" + raw_rest,
            query_string=scope.get("query_string", b""),
            headers=headers,
            body=body,
            client=tuple(client) if client else None,
            scheme="http",
            http_version=scope.get("http_version", "1.1"),
            receive=receive,
        )

    async def _attempt(
        self, upstream: Upstream, request: OutgoingRequest, relay: _Relay, *, final: bool
    ) -> _Outcome:
        breaker = upstream.breaker
        if not breaker.allow():
            return _Outcome(failure=Failure("breaker_open", "circuit breaker open"))
        relay.final = final
        try:
            result = await upstream.transport.call(request, upstream.timeout_s, relay)
        except BaseException:
            breaker.record_abandoned()  # the client left (cancelled): no verdict on the upstream
            raise
        if isinstance(result, Failure):
            breaker.record_failure()
            return _Outcome(failure=result)
        if result in BREAKER_FAILURE_STATUSES:
            breaker.record_failure()
        else:
            breaker.record_success()
        return _Outcome(status=result, forwarded=relay.forwarded)

    async def _retry(
        self, upstream: Upstream, request: OutgoingRequest, relay: _Relay, first: _Outcome, attempts: int
    ) -> _Outcome:
        """Retry after `first` failed, with backoff, until an answer, a final failure or `attempts` in all."""
        made = 1

        async def attempt() -> _Outcome:
            nonlocal made
            if made == 1:  # tenacity's first call stands for the attempt already made on the fast path
                made += 1
                return first
            made += 1
            _log.info("upstream_retry", upstream=upstream.name, attempt=made - 1, of=attempts)
            return await self._attempt(upstream, request, relay, final=made - 1 == attempts)

        def last_outcome(state: RetryCallState) -> _Outcome:
            assert state.outcome is not None
            result: _Outcome = state.outcome.result()
            return result

        retrying = AsyncRetrying(
            sleep=self._sleep,
            stop=stop_after_attempt(attempts),
            wait=self._wait,
            retry=retry_if_result(lambda o: o.retryable),
            retry_error_callback=last_outcome,
        )
        result: _Outcome = await retrying(attempt)
        return result

    async def _fail(
        self,
        upstream: Upstream,
        outcome: _Outcome,
        send: Any,
        rate_headers: list[tuple[bytes, bytes]],
    ) -> None:
        name = upstream.name
        failure = outcome.failure or Failure("error", f"answered {outcome.status}")
        upstream.count(failure.kind)
        if failure.kind == "breaker_open":
            wait = upstream.breaker.retry_after_s()
            await _answer(
                send,
                503,
                f"upstream {name} is failing; its circuit breaker is open for {wait} s more",
                "breaker_open",
                [*rate_headers, (b"retry-after", str(wait).encode())],
            )
            return
        _log.warning("upstream_failed", upstream=name, kind=failure.kind, detail=failure.detail)
        if failure.kind == "timeout":
            await _answer(
                send,
                504,
                f"upstream {name} did not answer within {upstream.timeout_s:g} s",
                "upstream_timeout",
                rate_headers,
            )
        elif failure.kind == "unreachable":
            await _answer(
                send,
                502,
                f"upstream {name} is unreachable: {failure.detail}",
                "upstream_unreachable",
                rate_headers,
            )
        else:
            await _answer(
                send, 502, f"upstream {name} failed: {failure.detail}", "upstream_failed", rate_headers
            )
