"""The engine API (port 8007): orders, positions, deals, accounts, risk limits, and a WebSocket of events.

Every route needs a token whose principal acts for a tenant, and sees only that tenant's accounts: the
tenant comes from the token, never from the request, so tenant B cannot even name tenant A's objects (an
unknown account or order is a 404 either way). Placing, changing and cancelling orders and setting risk
need a trading role (`portfolio_manager`, `tenant_admin`, `api_user`); reading needs any role. A denied order
is a 422 whose body carries MT5's retcode and the reason, and is audited like an accepted one.

This module does not use `from __future__ import annotations`: FastAPI resolves the closures' annotations.
"""

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Annotated, Any, Literal

import jwt
import msgspec
from fastapi import APIRouter, Depends, HTTPException, Query, Request, WebSocket, WebSocketDisconnect, status
from fastapi.responses import JSONResponse

from aitrading.common.auth import Principal, TokenService
from aitrading.common.bus import Bus
from aitrading.common.bus.codec import Message
from aitrading.common.clock import Clock
from aitrading.engine.books import AccountBook
from aitrading.engine.engine import ClientOrderIdTaken, TradingEngine
from aitrading.engine.limits import RiskLimits, RiskScope, RiskState
from aitrading.engine.schemas import (
    AccountPublic,
    DealPublic,
    OrderCreate,
    OrderModify,
    OrderPublic,
    PositionClose,
    PositionCloseBy,
    PositionPublic,
    RiskStateUpdate,
    SubmitPublic,
    account_public,
    deal_public,
    order_public,
    position_public,
)
from aitrading.model.commands import OrderRequest
from aitrading.model.enums import DealEntry, DealType, OrderFilling, OrderTime, OrderType, Side, TradeAction
from aitrading.model.ids import (
    AccountId,
    ClientOrderId,
    ClientOrderIdGenerator,
    TenantId,
    order_event_pattern,
)
from aitrading.model.orders import Order
from aitrading.model.values import PRICE_SCALE, VOLUME_SCALE, volume_decimal

__all__ = ["TRADING_ROLES", "engine_router"]

TRADING_ROLES = ("portfolio_manager", "tenant_admin", "api_user", "platform_admin")
UNPROCESSABLE = 422  # Starlette renamed its constant (…_ENTITY → …_CONTENT); the number is the contract

Authenticate = Callable[[Request], Awaitable[Principal]]


def _raw(value: Decimal | None, scale: int, what: str) -> int:
    if value is None:
        return 0
    scaled = value * scale
    if scaled != scaled.to_integral_value():
        raise HTTPException(UNPROCESSABLE, f"{what} {value} has too many decimals")
    return int(scaled)


def engine_router(  # noqa: PLR0915  # one small closure per route
    engine: TradingEngine, authenticate: Authenticate, tokens: TokenService, bus: Bus, clock: Clock
) -> APIRouter:
    """Return the router of the engine API over `engine`."""
    router = APIRouter(prefix="/api/v1", tags=["trading"])
    ids = ClientOrderIdGenerator(clock, prefix="API")

    async def tenant_principal(request: Request) -> Principal:
        principal = await authenticate(request)
        if principal.tenant is None:
            raise HTTPException(status.HTTP_403_FORBIDDEN, "this token acts for no tenant")
        return principal

    async def trader(principal: Annotated[Principal, Depends(tenant_principal)]) -> Principal:
        if not principal.has_role(*TRADING_ROLES):
            raise HTTPException(
                status.HTTP_403_FORBIDDEN, f"trading needs one of the roles {', '.join(TRADING_ROLES)}"
            )
        return principal

    Reader = Annotated[Principal, Depends(tenant_principal)]
    Trader = Annotated[Principal, Depends(trader)]

    def book_of(principal: Principal, account: str) -> Any:
        book = engine.book(principal.tenant or "", account)
        if book is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no trading account {account!r}")
        return book

    async def submit(req: OrderRequest, principal: Principal) -> JSONResponse:
        try:
            result = await engine.submit(req, f"user:{principal.subject}")
        except ClientOrderIdTaken as exc:
            raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
        body = SubmitPublic(
            accepted=not result.denied,
            retcode=result.retcode,
            reason=result.reason,
            text=result.text,
            order=order_public(result.order),
        )
        code = UNPROCESSABLE if result.denied else status.HTTP_202_ACCEPTED
        return JSONResponse(body.model_dump(), status_code=code)

    @router.get("/accounts", response_model=list[AccountPublic], summary="The tenant's trading accounts")
    async def accounts(principal: Reader) -> list[AccountPublic]:
        return [account_public(b) for b in engine.accounts_of(principal.tenant or "")]

    @router.get("/accounts/{account}", response_model=AccountPublic, summary="One account's money and risk")
    async def account(account: str, principal: Reader) -> AccountPublic:
        return account_public(book_of(principal, account))

    @router.get("/accounts/{account}/positions", response_model=list[PositionPublic])
    async def positions(account: str, principal: Reader) -> list[PositionPublic]:
        return [position_public(p) for p in book_of(principal, account).positions.values()]

    @router.get("/accounts/{account}/orders", response_model=list[OrderPublic])
    async def orders(
        account: str, principal: Reader, state: Literal["working", "all"] = "working"
    ) -> list[OrderPublic]:
        book = book_of(principal, account)
        chosen = book.working_orders() if state == "working" else list(book.orders.values())
        return [order_public(o) for o in chosen]

    @router.get("/accounts/{account}/deals", response_model=list[DealPublic])
    async def deals(
        account: str, principal: Reader, limit: Annotated[int, Query(ge=1, le=10_000)] = 500
    ) -> list[DealPublic]:
        book = book_of(principal, account)
        ordered = sorted(book.deals.values(), key=lambda d: (d.time_ns, d.ticket))
        return [deal_public(d) for d in ordered[-limit:]]

    @router.post(
        "/orders",
        status_code=status.HTTP_202_ACCEPTED,
        response_model=SubmitPublic,
        responses={422: {"model": SubmitPublic, "description": "denied: MT5 retcode and reason"}},
        summary="Place a market or pending order",
    )
    async def place(body: OrderCreate, principal: Trader) -> JSONResponse:
        book_of(principal, body.account)
        order_type = OrderType[body.type]
        req = OrderRequest(
            client_order_id=body.client_order_id or ids(),  # type: ignore[arg-type]
            tenant=TenantId(principal.tenant or ""),
            account=AccountId(body.account),
            ts_ns=clock.now_ns(),
            symbol=body.symbol,
            action=TradeAction.DEAL if order_type.is_market else TradeAction.PENDING,
            type=order_type,
            volume=_raw(body.volume, VOLUME_SCALE, "volume"),
            price=_raw(body.price, PRICE_SCALE, "price"),
            stoplimit=_raw(body.stoplimit, PRICE_SCALE, "stoplimit"),
            sl=_raw(body.sl, PRICE_SCALE, "sl"),
            tp=_raw(body.tp, PRICE_SCALE, "tp"),
            deviation=body.deviation,
            filling=OrderFilling[body.filling],
            type_time=OrderTime.SPECIFIED if body.expiration else OrderTime.GTC,
            expiration_ns=(body.expiration or 0) * 1_000_000_000,
            magic=body.magic,
            comment="",
            strategy=body.strategy,  # type: ignore[arg-type]
        )
        req = msgspec.structs.replace(req, comment=req.client_order_id)
        return await submit(req, principal)

    def order_of(principal: Principal, client_order_id: str) -> Any:
        coid = ClientOrderId(client_order_id)
        found = [(b, b.orders[coid]) for b in engine.accounts_of(principal.tenant or "") if coid in b.orders]
        if not found:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no order {client_order_id!r}")
        if len(found) > 1:  # client order ids are unique per account: never guess which one is meant
            accounts = ", ".join(sorted(b.account for b, _ in found))
            raise HTTPException(
                status.HTTP_409_CONFLICT, f"order {client_order_id!r} exists in several accounts: {accounts}"
            )
        return found[0]

    @router.get("/orders/{client_order_id}", response_model=OrderPublic)
    async def get_order(client_order_id: str, principal: Reader) -> OrderPublic:
        return order_public(order_of(principal, client_order_id)[1])

    def change(order: Any, action: TradeAction, **fields: Any) -> OrderRequest:
        if not order.ticket or order.is_terminal:
            raise HTTPException(
                status.HTTP_409_CONFLICT, f"order {order.client_order_id} is {order.state.name}"
            )
        coid = ids()
        return OrderRequest(
            client_order_id=coid,
            tenant=order.tenant,
            account=order.account,
            ts_ns=clock.now_ns(),
            symbol=order.symbol,
            action=action,
            type=order.type,
            order=order.ticket,
            comment=coid,
            **fields,
        )

    @router.patch("/orders/{client_order_id}", status_code=202, response_model=SubmitPublic)
    async def modify(client_order_id: str, body: OrderModify, principal: Trader) -> JSONResponse:
        _, order = order_of(principal, client_order_id)
        req = change(
            order,
            TradeAction.MODIFY,
            price=_raw(body.price, PRICE_SCALE, "price") or order.price,
            sl=_raw(body.sl, PRICE_SCALE, "sl") if body.sl is not None else order.sl,
            tp=_raw(body.tp, PRICE_SCALE, "tp") if body.tp is not None else order.tp,
        )
        return await submit(req, principal)

    @router.delete("/orders/{client_order_id}", status_code=202, response_model=SubmitPublic)
    async def cancel(client_order_id: str, principal: Trader) -> JSONResponse:
        _, order = order_of(principal, client_order_id)
        return await submit(change(order, TradeAction.REMOVE), principal)

    @router.post(
        "/accounts/{account}/positions/{identifier}/close", status_code=202, response_model=SubmitPublic
    )
    async def close(account: str, identifier: int, body: PositionClose, principal: Trader) -> JSONResponse:
        book = book_of(principal, account)
        first = book.orders.get(ClientOrderId(body.client_order_id)) if body.client_order_id else None
        if first is not None:  # the same close again (its answer was lost): the engine answers the first
            if not _closes(first, identifier, book):
                raise HTTPException(
                    status.HTTP_409_CONFLICT,
                    f"client_order_id {first.client_order_id} is already used by another order "
                    f"({first.type.name} {first.symbol}), not a close of position {identifier}",
                )
            again = OrderRequest(
                client_order_id=first.client_order_id,
                tenant=book.tenant,
                account=book.account,
                ts_ns=clock.now_ns(),
                symbol=first.symbol,
                action=TradeAction.DEAL,
                type=first.type,
                volume=first.volume,
            )
            return await submit(again, principal)
        position = book.positions.get(identifier)
        if position is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no open position {identifier}")
        volume = _raw(body.volume, VOLUME_SCALE, "volume") or position.volume
        if volume > position.volume:  # on a netting account the rest would open the opposite position
            held = volume_decimal(position.volume)
            raise HTTPException(
                UNPROCESSABLE, f"volume {body.volume} is more than position {identifier} holds ({held})"
            )
        coid = body.client_order_id or ids()
        req = OrderRequest(
            client_order_id=coid,  # type: ignore[arg-type]
            tenant=book.tenant,
            account=book.account,
            ts_ns=clock.now_ns(),
            symbol=position.symbol,
            action=TradeAction.DEAL,
            type=OrderType.SELL if position.type is Side.BUY else OrderType.BUY,
            volume=volume,
            # Named on netting accounts too: the terminal then refuses a close of a position already gone
            # (instead of opening the opposite one), and the engine a second close while one works (10039).
            position=position.ticket,
            deviation=body.deviation,
            magic=position.magic if body.magic is None else body.magic,
            comment=coid,
            strategy=body.strategy,  # type: ignore[arg-type]
        )
        return await submit(req, principal)

    @router.post(
        "/accounts/{account}/positions/{identifier}/close-by",
        status_code=202,
        response_model=SubmitPublic,
        responses={422: {"model": SubmitPublic, "description": "refused: MT5 retcode and reason"}},
        summary="Close a position by an opposite one (hedging accounts)",
    )
    async def close_by(
        account: str, identifier: int, body: PositionCloseBy, principal: Trader
    ) -> JSONResponse:
        book = book_of(principal, account)
        position = book.positions.get(identifier)
        if position is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no open position {identifier}")
        coid = ids()
        req = OrderRequest(
            client_order_id=coid,
            tenant=book.tenant,
            account=book.account,
            ts_ns=clock.now_ns(),
            symbol=position.symbol,
            action=TradeAction.CLOSE_BY,
            type=OrderType.CLOSE_BY,
            position=position.ticket,
            position_by=body.by,
            magic=body.magic,
            comment=coid,
        )
        return await submit(req, principal)  # the engine refuses netting accounts and unknown positions

    @router.get("/risk/limits", summary="Risk limits of the tenant, its accounts and strategies")
    async def get_limits(principal: Reader) -> list[dict[str, Any]]:
        return [
            {"scope": scope.value, "scope_id": scope_id, "limits": msgspec.to_builtins(limits)}
            for scope, scope_id, limits in engine.risk.levels_of(principal.tenant or "")
        ]

    @router.put("/risk/limits/{scope}/{scope_id}", summary="Set one level's risk limits")
    async def put_limits(
        scope: RiskScope, scope_id: str, request: Request, principal: Trader
    ) -> dict[str, Any]:
        try:
            limits = msgspec.json.decode(await request.body(), type=RiskLimits)
        except (msgspec.ValidationError, msgspec.DecodeError, ValueError) as exc:
            raise HTTPException(UNPROCESSABLE, f"invalid limits: {exc}") from None
        tenant = TenantId(principal.tenant or "")
        if scope is RiskScope.TENANT and scope_id != tenant:
            raise HTTPException(
                status.HTTP_404_NOT_FOUND, "tenant limits are set on the caller's own tenant id"
            )
        if scope is RiskScope.ACCOUNT:
            book_of(principal, scope_id)
        await engine.set_limits(tenant, scope, scope_id, limits, f"user:{principal.subject}")
        return {"scope": scope.value, "scope_id": scope_id, "limits": msgspec.to_builtins(limits)}

    @router.post("/accounts/{account}/risk-state", response_model=AccountPublic, summary="Halt or resume")
    async def risk_state(account: str, body: RiskStateUpdate, principal: Trader) -> AccountPublic:
        book_of(principal, account)
        book = await engine.set_risk_state(
            TenantId(principal.tenant or ""),
            AccountId(account),
            RiskState(body.state),
            f"user:{principal.subject}",
            body.reason,
        )
        return account_public(book)

    @router.websocket("/stream")
    async def stream(websocket: WebSocket) -> None:
        """Order, position, account and risk events of the caller's tenant, as JSON (token in `?token=`)."""
        token = websocket.query_params.get("token", "")
        try:
            principal = tokens.verify(token)
        except jwt.InvalidTokenError:
            await websocket.close(code=1008, reason="invalid or missing token")
            return
        if principal.tenant is None:
            await websocket.close(code=1008, reason="this token acts for no tenant")
            return
        await websocket.accept()
        queue: asyncio.Queue[Message] = asyncio.Queue(maxsize=10_000)

        async def forward(_subject: str, msg: Message) -> None:
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(msg)

        sub = await bus.subscribe(order_event_pattern(principal.tenant), forward)
        try:
            while True:
                msg = await queue.get()
                payload = {
                    "type": type(msg).__name__,
                    **msgspec.to_builtins(msgspec.structs.asdict(msg), enc_hook=str),
                }
                await websocket.send_text(msgspec.json.encode(payload).decode())
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            await sub.unsubscribe()

    return router


def _closes(order: Order, identifier: int, book: AccountBook) -> bool:
    """Whether `order` is a market close of position `identifier` (a retried close names the same one).

    A close is created naming the position (`position_id`) and trades against its side. The side is the
    open position's, or, once it is gone, that of the deal that opened it: the order that opened or added
    to the position carries its id too, but on the position's own side.
    """
    position = book.positions.get(identifier)
    names = (identifier, position.ticket) if position is not None else (identifier,)
    if order.position_id not in names or order.type not in (OrderType.BUY, OrderType.SELL):
        return False
    if position is not None:
        side = position.type
    else:
        opening = next(
            (d for d in book.deals.values() if d.position_id == identifier and d.entry is DealEntry.IN), None
        )
        if opening is None:
            return False
        side = Side.BUY if opening.type is DealType.BUY else Side.SELL
    return order.type is (OrderType.SELL if side is Side.BUY else OrderType.BUY)
