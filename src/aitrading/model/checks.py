"""Pre-trade checks with MT5's return codes: what the trade server would answer to a request.

`check_request` never raises for a bad request; it returns a `CheckResult` with MT5's
`TRADE_RETCODE_*` (https://www.mql5.com/en/docs/constants/errorswarnings/enum_trade_return_codes) and a
comment. Checks run in the order the server reports them, first failure wins:

1. INVALID (10013): structurally malformed (`model.commands.request_problems`), or symbol mismatch.
2. MARKET_CLOSED (10018): the symbol's session is closed.
3. PRICE_OFF (10021): no usable quote (bid or ask ≤ 0, or bid > ask).
4. INVALID_EXPIRATION (10022): ORDER_TIME_SPECIFIED(_DAY) expiring at or before `now_ms`.
5. INVALID_VOLUME (10014): volume below min, above max or off the step grid.
6. INVALID_PRICE (10015): a price off the symbol's digits; a pending order on the wrong side of the
   market or inside the stops level ("Requirements and Limitations in Making Trades", MQL5/MQL4 book:
   BuyLimit Ask−Open ≥ StopLevel, SellLimit Open−Bid ≥ StopLevel, BuyStop Open−Ask ≥ StopLevel,
   SellStop Bid−Open ≥ StopLevel); a stop-limit's limit price must sit at least the stops level
   behind its trigger (below for BUY, above for SELL).
7. INVALID_STOPS (10016): SL/TP off the digits, on the wrong side or inside the stops level. Market orders
   measure from the price they close at (BUY: Bid−SL ≥ StopLevel, TP−Bid ≥ StopLevel; SELL: SL−Ask ≥
   StopLevel, Ask−TP ≥ StopLevel); pending orders from their open price (the stop-limit's limit price).
   The boundary itself is allowed, and a zero distance never is (a stop at the market would fire at once).
8. NO_MONEY (10019): free margin below the margin the order needs (market orders at ask/bid, pending
   orders at their open price), computed by `model.calc.margin` (ERROR 10011 when it cannot be). With
   `money=False` this step is the caller's (the simulated broker checks the whole account's margin): the
   margin is not worked out and the result's margin is 0.
9. DONE (10009).

SLTP, MODIFY, REMOVE and CLOSE_BY need the position or order they act on (freeze level, current stops);
here they get the structural and session checks only, and the comment says so.
"""

from __future__ import annotations

import enum
from decimal import Decimal

import msgspec

from aitrading.model.accounts import AccountState
from aitrading.model.calc import Rates, margin
from aitrading.model.commands import OrderRequest, request_problems
from aitrading.model.enums import OrderTime, OrderType, Side, TradeAction
from aitrading.model.market import Tick
from aitrading.model.symbols import SymbolSpec

__all__ = ["CheckResult", "Retcode", "check_request"]

_NS_PER_MS = 1_000_000


class Retcode(enum.IntEnum):
    """The `TRADE_RETCODE_*` values the checks return (MT5's numbers; see `aitrading.mt5.constants`)."""

    DONE = 10009
    ERROR = 10011
    INVALID = 10013
    INVALID_VOLUME = 10014
    INVALID_PRICE = 10015
    INVALID_STOPS = 10016
    MARKET_CLOSED = 10018
    NO_MONEY = 10019
    PRICE_OFF = 10021
    INVALID_EXPIRATION = 10022
    CLOSE_ORDER_EXIST = 10039


class CheckResult(msgspec.Struct, frozen=True, kw_only=True):
    """The verdict on a request: MT5's retcode, a human comment and the margin it needs (0 if unknown)."""

    retcode: int
    comment: str
    margin: Decimal = Decimal(0)

    @property
    def ok(self) -> bool:
        """True when the request passed every check."""
        return self.retcode == Retcode.DONE


class _TickRates:
    """Rates holding only the request's own symbol (enough when it converts itself, e.g. USDJPY → USD)."""

    def __init__(self, tick: Tick) -> None:
        self._tick = tick

    def quote(self, symbol: str) -> tuple[int, int] | None:
        return (self._tick.bid, self._tick.ask) if symbol == self._tick.symbol else None


def _fail(code: Retcode, comment: str) -> CheckResult:
    return CheckResult(retcode=code, comment=comment)


def check_request(
    request: OrderRequest,
    spec: SymbolSpec,
    tick: Tick,
    account: AccountState,
    *,
    now_ms: int,
    market_open: bool,
    rates: Rates | None = None,
    money: bool = True,
) -> CheckResult:
    """Return MT5's verdict on `request` for `spec` at `tick` against `account` (see the module docstring).

    `rates` converts margin to the account currency; without it only the request's own symbol is known.
    `money=False` leaves step 8 (margin and NO_MONEY) to the caller.
    """
    problems = request_problems(request)
    if problems:
        return _fail(Retcode.INVALID, "; ".join(problems))
    if request.symbol != spec.name or tick.symbol != spec.name:
        return _fail(Retcode.INVALID, f"request {request.symbol!r}, spec {spec.name!r}, tick {tick.symbol!r}")
    if not market_open:
        return _fail(Retcode.MARKET_CLOSED, f"market closed for {spec.name}")
    if tick.bid <= 0 or tick.ask <= 0 or tick.bid > tick.ask:
        return _fail(Retcode.PRICE_OFF, f"no usable quote for {spec.name}")
    if request.action not in (TradeAction.DEAL, TradeAction.PENDING):
        return CheckResult(
            retcode=Retcode.DONE,
            comment=f"TRADE_ACTION_{request.action.name}: structural and session checks only",
        )
    return _check_new_order(
        request, spec, tick, account, now_ms, rates if rates is not None else _TickRates(tick), money
    )


def _check_new_order(
    request: OrderRequest,
    spec: SymbolSpec,
    tick: Tick,
    account: AccountState,
    now_ms: int,
    rates: Rates,
    money: bool,
) -> CheckResult:
    if (
        request.action is TradeAction.PENDING
        and request.type_time in (OrderTime.SPECIFIED, OrderTime.SPECIFIED_DAY)
        and request.expiration_ns <= now_ms * _NS_PER_MS
    ):
        return _fail(Retcode.INVALID_EXPIRATION, "expiration is not in the future")
    if not spec.volume_ok(request.volume):
        return _fail(
            Retcode.INVALID_VOLUME,
            f"volume {request.volume} outside [{spec.volume_min}, {spec.volume_max}] "
            f"or off the step {spec.volume_step} (raw 1e-8 lots)",
        )
    failure = _price_failure(request, spec, tick)
    if failure is not None:
        return failure
    side = request.type.side
    if request.action is TradeAction.DEAL:
        open_price = side.entry_price(tick.bid, tick.ask)
    else:
        open_price = request.stoplimit if request.type.is_stop_limit else request.price
    failure = _stops_failure(request, spec, tick, side, open_price)
    if failure is not None:
        return failure
    if not money:
        return CheckResult(retcode=Retcode.DONE, comment="Done")
    try:
        required = margin(
            spec,
            side,
            request.volume,
            open_price,
            leverage=account.leverage,
            account_currency=account.currency,
            rates=rates,
            digits=account.digits,
        )
    except ValueError as exc:
        return _fail(Retcode.ERROR, f"cannot compute margin: {exc}")
    if account.margin_free < required:
        return CheckResult(
            retcode=Retcode.NO_MONEY,
            comment=f"free margin {account.margin_free} < required {required} {account.currency}",
            margin=required,
        )
    return CheckResult(retcode=Retcode.DONE, comment="Done", margin=required)


def _on_grid(raw: int, spec: SymbolSpec) -> bool:
    return raw % spec.point_raw == 0


def _price_failure(request: OrderRequest, spec: SymbolSpec, tick: Tick) -> CheckResult | None:
    if request.price or request.stoplimit:  # else nothing to check (a market order without a price)
        for name, raw in (("price", request.price), ("stoplimit", request.stoplimit)):
            if raw and not _on_grid(raw, spec):
                return _fail(Retcode.INVALID_PRICE, f"{name} has more than {spec.digits} digits")
    if request.action is not TradeAction.PENDING:
        return None
    level = spec.stops_level * spec.point_raw
    kind = request.type
    price = request.price
    # Distance the trigger/limit price must keep from the market, positive on the right side.
    distance = {
        OrderType.BUY_LIMIT: tick.ask - price,
        OrderType.SELL_LIMIT: price - tick.bid,
        OrderType.BUY_STOP: price - tick.ask,
        OrderType.SELL_STOP: tick.bid - price,
        OrderType.BUY_STOP_LIMIT: price - tick.ask,
        OrderType.SELL_STOP_LIMIT: tick.bid - price,
    }[kind]
    if distance <= 0 or distance < level:
        return _fail(
            Retcode.INVALID_PRICE,
            f"{kind.name} price on the wrong side of the market or within {spec.stops_level} points",
        )
    if kind.is_stop_limit:
        gap = price - request.stoplimit if kind.side is Side.BUY else request.stoplimit - price
        if gap <= 0 or gap < level:
            return _fail(
                Retcode.INVALID_PRICE,
                f"{kind.name} stoplimit on the wrong side of the trigger or within {spec.stops_level} points",
            )
    return None


def _stops_failure(
    request: OrderRequest, spec: SymbolSpec, tick: Tick, side: Side, open_price: int
) -> CheckResult | None:
    if not request.sl and not request.tp:  # no stops: nothing below can fail
        return None
    for name, raw in (("sl", request.sl), ("tp", request.tp)):
        if raw and not _on_grid(raw, spec):
            return _fail(Retcode.INVALID_STOPS, f"{name} has more than {spec.digits} digits")
    # A market position is marked at the price it closes at; a pending order's stops hang off its price.
    ref = side.exit_price(tick.bid, tick.ask) if request.action is TradeAction.DEAL else open_price
    level = spec.stops_level * spec.point_raw
    if request.sl:
        distance = (ref - request.sl) * side.sign
        if distance <= 0 or distance < level:
            return _fail(
                Retcode.INVALID_STOPS,
                f"sl on the wrong side or within {spec.stops_level} points of {ref}",
            )
    if request.tp:
        distance = (request.tp - ref) * side.sign
        if distance <= 0 or distance < level:
            return _fail(
                Retcode.INVALID_STOPS,
                f"tp on the wrong side or within {spec.stops_level} points of {ref}",
            )
    return None
