"""`EngineClient`: the decision engine's orders to the trading engine over its HTTP API (split mode).

In one process the decision engine calls `TradingEngine.submit` directly. When the trading engine runs in
another process (`aitrading up --split`, docker-compose) the decision service gets this client instead:
the same `submit(request, actor)` and `positions(symbol)` ports (`aitrading.decision.engine`), spoken over
the engine API (port 8007, `aitrading.engine.api`) with a short-lived service token that acts for the
configured tenant with the `portfolio_manager` role, over HTTPS with the platform's CA when
`security.tls.enabled` (and a client certificate under mTLS).

What is sent
------------
- A new position: `POST /api/v1/orders` with the decision engine's client order id, volume, deviation,
  filling, magic and strategy. The engine answers a repeated client order id with what happened to the
  first (`TradingEngine.submit`), so this request is retried (`retries` times, `backoff_s` apart,
  doubling) when the answer is lost: a transport error, a timeout, or a 5xx.
- Closing a position (the request names `position`): `POST /api/v1/accounts/{account}/positions/{id}/close`
  with the deviation, magic, strategy, the same client order id and the volume unless it is the whole
  position (then the engine closes what the position holds when the close arrives); it answers a repeated
  id with the first close (even once the position is gone), so it is retried like a new order.

What comes back, and the counters (`status()`)
----------------------------------------------
- 202: accepted (`accepted`). 422 with the engine's body: denied with MT5's retcode and the reason
  (`denied`: the risk check or an MT5 pre-trade check said no). Any other 4xx (a rejected token, an
  unknown account or position, a malformed request): refused with the engine's `detail` (`refused`).
- 5xx after the retries: `errors`. No answer after the retries: `unreachable`, logged as a warning. An
  answer that is not the engine's JSON: `errors`. `submit` never raises: every one of these is an answer
  with `denied=True` and the reason, which the decision engine counts and logs as a denial.

Positions
---------
`positions(symbol)` is synchronous (the decision engine asks while it decides), so it reads a snapshot:
`refresh()` fetches `GET /api/v1/accounts/{account}/positions`, and the decision pipeline calls it before
it hands intents to the engine. A failed refresh keeps the previous snapshot and is counted
(`positions_failures`). Positions carry their magic number, so the decision engine finds its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import httpx
import structlog

from aitrading.common.auth import TokenService
from aitrading.common.clock import Clock
from aitrading.common.config import PlatformConfig
from aitrading.common.tls import httpx_verify, service_url
from aitrading.model.commands import OrderRequest
from aitrading.model.enums import Side
from aitrading.model.positions import Position
from aitrading.model.values import price_decimal, price_raw, volume_decimal, volume_raw

__all__ = ["ENGINE_ROLE", "EngineAnswer", "EngineClient"]

_log = structlog.get_logger("decision")

ENGINE_ROLE = "portfolio_manager"
"""The role of the service token: trading, within the tenant (`aitrading.engine.api.TRADING_ROLES`)."""

_NOTIONAL = Decimal("1e-17")
_API_TYPES = frozenset(
    {"BUY", "SELL", "BUY_LIMIT", "SELL_LIMIT", "BUY_STOP", "SELL_STOP", "BUY_STOP_LIMIT", "SELL_STOP_LIMIT"}
)
_API_FILLINGS = frozenset({"FOK", "IOC", "RETURN"})


@dataclass(frozen=True, slots=True)
class EngineAnswer:
    """What the trading engine said to one request (the decision engine reads `denied` and `reason`)."""

    denied: bool
    reason: str = ""
    retcode: int = 0
    status: int = 0
    """The HTTP status; 0 when no answer came."""
    client_order_id: str = ""


class EngineClient:
    """The trading engine's submit and positions ports over its HTTP API; see the module docstring."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        tokens: TokenService,
        clock: Clock,
        *,
        tenant: str,
        account: str,
        retries: int = 2,
        backoff_s: float = 0.2,
        token_ttl_s: int = 60,
    ) -> None:
        if not tenant or not account:
            raise ValueError("the engine client needs the tenant and the account it trades")
        if retries < 0 or backoff_s < 0:
            raise ValueError("retries and backoff_s must not be negative")
        self._http = http
        self._tokens = tokens
        self._clock = clock
        self.tenant = tenant
        self.account = account
        self._retries = retries
        self._backoff_s = backoff_s
        self._ttl = token_ttl_s
        self._positions: list[Position] = []
        self.counters: dict[str, int] = {
            "sent": 0,
            "accepted": 0,
            "denied": 0,
            "refused": 0,
            "errors": 0,
            "unreachable": 0,
            "retries": 0,
            "positions_refreshed": 0,
            "positions_failures": 0,
        }
        self.last_error = ""

    @classmethod
    def for_platform(
        cls,
        config: PlatformConfig,
        tokens: TokenService,
        clock: Clock,
        *,
        tenant: str,
        account: str,
        identity: str = "decision",
        timeout_s: float = 5.0,
    ) -> EngineClient:
        """Build a client of the platform's trading engine (TLS per config), acting as service `identity`."""
        http = httpx.AsyncClient(
            base_url=service_url(config, "engine"),
            verify=httpx_verify(config, identity),
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 3.0)),
        )
        return cls(http, tokens, clock, tenant=tenant, account=account)

    async def start(self) -> None:
        """Read the account's positions once (a failure is counted; the first decision asks again)."""
        await self.refresh()

    async def stop(self) -> None:
        """Close the HTTP client."""
        await self._http.aclose()

    # --- the ports ------------------------------------------------------------------------------------

    async def submit(self, req: OrderRequest, actor: str) -> EngineAnswer:
        """Send `req` to the trading engine; return its answer (never raises; see the module docstring)."""
        self.counters["sent"] += 1
        if req.tenant != self.tenant or req.account != self.account:
            return self._refused(req, 0, f"this client trades {self.tenant}/{self.account} only")
        if req.position:
            path = f"/api/v1/accounts/{self.account}/positions/{self._identifier(req.position)}/close"
            # All of what the snapshot showed: say "all" and let the engine take the position's volume now
            # (the snapshot may be older than a partial close); the engine refuses more than it holds.
            whole = any(p.ticket == req.position and p.volume == req.volume for p in self._positions)
            body: dict[str, Any] = _close_body(req, whole=whole)
        else:
            problem = _unsupported(req)
            if problem:
                return self._refused(req, 0, problem)
            path, body = "/api/v1/orders", _order_body(req)
        attempt = 0
        while True:  # both routes answer a repeated client order id with the first: safe to send again
            try:
                resp = await self._http.post(path, json=body, headers=self._auth(actor))
            except httpx.HTTPError as exc:
                if attempt < self._retries:
                    attempt += 1
                    await self._pause(attempt)
                    continue
                return self._unreachable(req, exc)
            if resp.status_code >= 500 and attempt < self._retries:
                attempt += 1
                await self._pause(attempt)
                continue
            return self._answer(req, resp)

    def positions(self, symbol: str) -> list[Position]:
        """The account's open positions in `symbol`, as of the last `refresh`."""
        return [p for p in self._positions if p.symbol == symbol]

    async def refresh(self) -> bool:
        """Fetch the account's open positions; return False (keeping the last ones) if that failed."""
        try:
            resp = await self._http.get(
                f"/api/v1/accounts/{self.account}/positions", headers=self._auth("decision")
            )
            if resp.status_code != 200:
                raise ValueError(f"engine answered {resp.status_code}: {_detail(resp)}")
            self._positions = [_position(row) for row in resp.json()]
        except (httpx.HTTPError, ValueError, KeyError, TypeError, ArithmeticError) as exc:
            self.counters["positions_failures"] += 1
            self.last_error = f"positions: {exc!r}"[:300]
            _log.warning("engine_positions_failed", account=self.account, error=str(exc) or repr(exc))
            return False
        self.counters["positions_refreshed"] += 1
        return True

    def status(self) -> dict[str, Any]:
        """Where orders go, the counters and the last failure."""
        return {
            "engine": str(self._http.base_url),
            "account": self.account,
            "counters": dict(self.counters),
            "last_error": self.last_error,
        }

    # --- internals ------------------------------------------------------------------------------------

    def _auth(self, actor: str) -> dict[str, str]:
        # The subject names the actor, so the engine's audit event says which strategy sent the order.
        token = self._tokens.issue(f"svc:{actor}", tenant=self.tenant, roles=(ENGINE_ROLE,), ttl_s=self._ttl)
        return {"Authorization": f"Bearer {token}"}

    async def _pause(self, attempt: int) -> None:
        self.counters["retries"] += 1
        await self._clock.sleep(self._backoff_s * 2 ** (attempt - 1))

    def _identifier(self, ticket: int) -> int:
        """The position identifier of `ticket` (the close route takes identifiers; usually they match)."""
        for p in self._positions:
            if p.ticket == ticket:
                return p.identifier
        return ticket

    def _answer(self, req: OrderRequest, resp: httpx.Response) -> EngineAnswer:
        coid = str(req.client_order_id)
        try:
            body = resp.json()
        except ValueError:
            body = None
        submitted = isinstance(body, dict) and isinstance(body.get("accepted"), bool)
        if resp.status_code == 202 and submitted:
            self.counters["accepted"] += 1
            assert isinstance(body, dict)
            return EngineAnswer(False, "", int(body.get("retcode", 0)), 202, coid)
        if resp.status_code == 422 and submitted:  # the engine's denial: MT5 retcode and reason
            assert isinstance(body, dict)
            self.counters["denied"] += 1
            reason = str(body.get("reason") or body.get("text") or "denied")
            return EngineAnswer(True, reason, int(body.get("retcode", 0)), 422, coid)
        if 400 <= resp.status_code < 500:
            return self._refused(req, resp.status_code, _detail(resp))
        self.counters["errors"] += 1
        self.last_error = f"{coid}: engine answered {resp.status_code}: {_detail(resp)}"[:300]
        _log.warning("engine_error", order=coid, status=resp.status_code, detail=_detail(resp))
        return EngineAnswer(True, f"engine error {resp.status_code}", 0, resp.status_code, coid)

    def _refused(self, req: OrderRequest, status: int, detail: str) -> EngineAnswer:
        self.counters["refused"] += 1
        coid = str(req.client_order_id)
        self.last_error = f"{coid}: refused ({status}): {detail}"[:300]
        _log.warning("engine_refused", order=coid, status=status, detail=detail)
        return EngineAnswer(True, f"refused: {detail}"[:300], 0, status, coid)

    def _unreachable(self, req: OrderRequest, exc: httpx.HTTPError) -> EngineAnswer:
        self.counters["unreachable"] += 1
        coid = str(req.client_order_id)
        error = str(exc) or type(exc).__name__
        self.last_error = f"{coid}: engine unreachable: {error}"[:300]
        _log.warning("engine_unreachable", order=coid, url=str(self._http.base_url), error=error)
        return EngineAnswer(True, f"engine unreachable: {error}"[:300], 0, 0, coid)


def _unsupported(req: OrderRequest) -> str:
    if req.type.name not in _API_TYPES:
        return f"the engine API takes no {req.type.name} orders"
    if req.filling.name not in _API_FILLINGS:
        return f"the engine API takes no {req.filling.name} filling"
    if req.order or req.position_by:
        return "the engine API changes orders through PATCH/DELETE, not through a new order"
    return ""


def _close_body(req: OrderRequest, *, whole: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "deviation": req.deviation,
        "magic": req.magic,
        "client_order_id": req.client_order_id,
    }
    if not whole:
        body["volume"] = str(volume_decimal(req.volume))
    if req.strategy is not None:
        body["strategy"] = req.strategy
    return body


def _order_body(req: OrderRequest) -> dict[str, Any]:
    body: dict[str, Any] = {
        "account": req.account,
        "symbol": req.symbol,
        "type": req.type.name,
        "volume": str(volume_decimal(req.volume)),
        "deviation": req.deviation,
        "filling": req.filling.name,
        "magic": req.magic,
        "client_order_id": req.client_order_id,
    }
    for name in ("price", "stoplimit", "sl", "tp"):
        raw = getattr(req, name)
        if raw:
            body[name] = str(price_decimal(raw))
    if req.expiration_ns:
        body["expiration"] = req.expiration_ns // 1_000_000_000
    if req.strategy is not None:
        body["strategy"] = req.strategy
    return body


def _position(row: dict[str, Any]) -> Position:
    volume = volume_raw(row["volume"])
    lots = volume_decimal(volume)
    current = row.get("price_current")
    return Position(
        ticket=int(row["ticket"]),
        identifier=int(row["identifier"]),
        symbol=str(row["symbol"]),
        type=Side[str(row["type"])],
        volume=volume,
        cost=(Decimal(str(row["price_open"])) * lots).quantize(_NOTIONAL, rounding=ROUND_HALF_EVEN),
        sl=price_raw(row["sl"]) if row.get("sl") else 0,
        tp=price_raw(row["tp"]) if row.get("tp") else 0,
        price_current=price_raw(current) if current else 0,
        swap=Decimal(str(row.get("swap", "0"))),
        profit=Decimal(str(row.get("profit", "0"))),
        magic=int(row.get("magic", 0)),
    )


def _detail(resp: httpx.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return resp.text[:300]
    detail = body.get("detail", body) if isinstance(body, dict) else body
    return str(detail)[:300]
