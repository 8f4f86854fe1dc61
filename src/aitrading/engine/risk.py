"""The risk engine: pre-trade limits per tenant, account and strategy, and the account's risk state.

`check` answers None (pass) or a `RiskDenial` with a stable reason code; it never raises for a bad order.
The engine turns a denial into an `OrderDenied` event and an audit record. Reason codes:

| code | when |
|---|---|
| `kill_switch` | a kill switch is on at any level (closing and cancelling still pass) |
| `halted` | the account is HALTED (drawdown or manual) and the order would not close anything |
| `reducing_only` | the account is REDUCING and the order would add risk |
| `order_rate` | more than `max_orders_per_minute` orders in the last 60 s at that level |
| `outside_trading_hours` | a risk-adding order outside every trading window |
| `max_volume` | the order's volume exceeds `max_volume_per_order` |
| `max_position` | the symbol's resulting position would exceed `max_position_volume` |
| `max_open_positions` | one more position than `max_open_positions` |
| `max_gross_exposure` | Σ notional of positions plus the order exceeds `max_gross_exposure` |
| `no_conversion_rate` | the exposure cannot be valued: no quote converts a currency to the account's |
| `price_band` | the order's price is more than `price_band_pct` from the last tick's mid |

`evaluate` moves an account between ACTIVE, REDUCING and HALTED from its equity: the loss since the start of
the UTC day against `max_daily_loss` and the fall from the equity peak against `max_drawdown_pct`. A new day
lifts a daily-loss REDUCING; HALTED stays until someone resets it (`reset`).
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from decimal import Decimal
from typing import NamedTuple

from aitrading.common.clock import Clock
from aitrading.engine.books import AccountBook
from aitrading.engine.limits import BreachAction, RiskLimits, RiskScope, RiskState
from aitrading.model.commands import OrderRequest
from aitrading.model.enums import Side, TradeAction
from aitrading.model.events import AccountRiskStateChanged
from aitrading.model.market import Tick
from aitrading.model.values import PRICE_SCALE

__all__ = ["NotionalFn", "RiskDenial", "RiskEngine", "is_reducing"]

_NS_PER_DAY = 86_400 * 1_000_000_000
_NS_PER_MIN = 60 * 1_000_000_000
_HUNDRED = Decimal(100)

NotionalFn = Callable[[str, int, int], Decimal]
"""(symbol, raw volume, raw price) → |notional| in the account currency."""


class RiskDenial(NamedTuple):
    """Why the risk engine refused an order: a stable code, a readable text and the level it came from."""

    reason: str
    text: str
    scope: str = ""


def is_reducing(req: OrderRequest, book: AccountBook) -> bool:
    """Tell whether `req` only reduces the account's risk (closes, partly closes, or cancels)."""
    action = req.action
    if action in (TradeAction.REMOVE, TradeAction.CLOSE_BY):
        return True
    if action is not TradeAction.DEAL:
        return False
    side = req.type.side
    if req.position:
        target = book.positions.get(req.position) or next(
            (p for p in book.positions.values() if p.ticket == req.position), None
        )
        return target is not None and target.type is not side and req.volume <= target.volume
    if book.hedging:
        return False
    net = book.net_volume(req.symbol)
    return net != 0 and (net > 0) == (side is Side.SELL) and req.volume <= abs(net)


def _resulting_volume(req: OrderRequest, book: AccountBook, side: Side, *, hedging: bool) -> int:
    """Return the symbol's volume on the order's side once `req` fills (netting: the net position)."""
    if hedging:  # the same side's positions grow; the other side's do not offset them
        held = sum(p.volume for p in book.positions.values() if p.symbol == req.symbol and p.type is side)
        return held + req.volume
    return abs(book.net_volume(req.symbol) + side.sign * req.volume)


class RiskEngine:
    """Holds the limits of every level and checks orders against them."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._limits: dict[tuple[RiskScope, str, str], RiskLimits] = {}
        self._recent: dict[tuple[RiskScope, str, str], collections.deque[int]] = {}

    def set_limits(self, scope: RiskScope, tenant: str, scope_id: str, limits: RiskLimits | None) -> None:
        """Set (or with None remove) one level's limits; `scope_id` is the tenant, account or strategy."""
        key = (scope, tenant, scope_id)
        if limits is None:
            self._limits.pop(key, None)
        else:
            self._limits[key] = limits

    def limits(self, scope: RiskScope, tenant: str, scope_id: str) -> RiskLimits | None:
        """Return the limits of one level, if set."""
        return self._limits.get((scope, tenant, scope_id))

    def levels_of(self, tenant: str) -> list[tuple[RiskScope, str, RiskLimits]]:
        """Return every level of `tenant` that has limits: (scope, scope id, limits)."""
        return [(scope, sid, lim) for (scope, t, sid), lim in self._limits.items() if t == tenant]

    def _levels(self, req: OrderRequest) -> list[tuple[tuple[RiskScope, str, str], RiskLimits]]:
        keys = [(RiskScope.TENANT, req.tenant, req.tenant), (RiskScope.ACCOUNT, req.tenant, req.account)]
        if req.strategy is not None:
            keys.append((RiskScope.STRATEGY, req.tenant, req.strategy))
        return [(k, limits) for k in keys if (limits := self._limits.get(k)) is not None]

    def check(
        self, req: OrderRequest, book: AccountBook, tick: Tick | None, notional: NotionalFn
    ) -> RiskDenial | None:
        """Return why `req` must not go out, or None; see the module docstring for the order of checks."""
        levels = self._levels(req)
        reducing = is_reducing(req, book)
        for key, limits in levels:
            if limits.kill_switch and not reducing:
                return RiskDenial("kill_switch", f"the {key[0]} kill switch is on", key[0])
        if book.risk_state is RiskState.HALTED and not reducing:
            return RiskDenial("halted", f"the account is halted: {book.risk_reason}", RiskScope.ACCOUNT)
        if book.risk_state is RiskState.REDUCING and not reducing and req.action is not TradeAction.SLTP:
            return RiskDenial(
                "reducing_only", f"the account only reduces risk: {book.risk_reason}", RiskScope.ACCOUNT
            )
        now = self._clock.now_ns()
        gross: dict[int, Decimal] = {}  # the same order's exposure is valued once for every level
        for key, limits in levels:
            denial = self._rate(key, limits, now)
            if denial is None and not reducing and req.action in (TradeAction.DEAL, TradeAction.PENDING):
                denial = self._new_risk(req, book, tick, limits, notional, now, gross)
            if denial is not None:
                return RiskDenial(denial[0], denial[1], key[0])
        return None

    def record(self, req: OrderRequest) -> None:
        """Count an order that passed (for the order-rate limits)."""
        now = self._clock.now_ns()
        for key, limits in self._levels(req):
            if limits.max_orders_per_minute is not None:
                self._recent.setdefault(key, collections.deque()).append(now)

    def _rate(self, key: tuple[RiskScope, str, str], limits: RiskLimits, now: int) -> tuple[str, str] | None:
        cap = limits.max_orders_per_minute
        if cap is None:
            return None
        recent = self._recent.get(key)
        if recent is None:
            recent = self._recent[key] = collections.deque()
        while recent and recent[0] <= now - _NS_PER_MIN:
            recent.popleft()
        if len(recent) >= cap:
            return "order_rate", f"{len(recent)} orders in the last minute; the limit is {cap}"
        return None

    def _new_risk(
        self,
        req: OrderRequest,
        book: AccountBook,
        tick: Tick | None,
        limits: RiskLimits,
        notional: NotionalFn,
        now: int,
        gross_at: dict[int, Decimal],
    ) -> tuple[str, str] | None:
        if limits.trading_windows is not None:
            weekday = (now // _NS_PER_DAY + 3) % 7  # 1970-01-01 was a Thursday
            minute = (now % _NS_PER_DAY) // _NS_PER_MIN
            if not any(w.contains(weekday, minute) for w in limits.trading_windows):
                return "outside_trading_hours", "risk-adding orders are outside the trading windows now"
        if limits.max_volume_per_order is not None and req.volume > limits.max_volume_per_order:
            return "max_volume", f"volume {req.volume} exceeds {limits.max_volume_per_order} per order"
        side = req.type.side
        hedging = book.hedging
        if limits.max_position_volume is not None:
            resulting = _resulting_volume(req, book, side, hedging=hedging)
            if resulting > limits.max_position_volume:
                return (
                    "max_position",
                    f"{req.symbol} would hold {resulting}, above {limits.max_position_volume}",
                )
        if limits.max_open_positions is not None:
            opens = hedging or book.position_of(req.symbol) is None
            count = len(book.positions) + (1 if opens else 0)
            if count > limits.max_open_positions:
                return "max_open_positions", f"{count} positions would exceed {limits.max_open_positions}"
        price = req.price or (0 if tick is None else side.entry_price(tick.bid, tick.ask))
        if limits.max_gross_exposure is not None and price:
            try:
                gross = self._gross(req, book, notional, price, gross_at)
            except ValueError as exc:
                return "no_conversion_rate", f"gross exposure cannot be valued: {exc}"
            if gross > limits.max_gross_exposure:
                return (
                    "max_gross_exposure",
                    f"gross exposure {gross} would exceed {limits.max_gross_exposure}",
                )
        if limits.price_band_pct is not None and tick is not None and req.price:
            mid2 = tick.bid + tick.ask
            off = Decimal(abs(2 * req.price - mid2)) * _HUNDRED / Decimal(mid2)
            if off > limits.price_band_pct:
                band = limits.price_band_pct
                return (
                    "price_band",
                    f"price {req.price / PRICE_SCALE} is {off:.4f}% from the market (band {band}%)",
                )
        return None

    @staticmethod
    def _gross(
        req: OrderRequest, book: AccountBook, notional: NotionalFn, price: int, memo: dict[int, Decimal]
    ) -> Decimal:
        if price in memo:
            return memo[price]
        held = (
            notional(p.symbol, p.volume, p.price_current or p.price_open_raw) for p in book.positions.values()
        )
        memo[price] = gross = sum(held, Decimal(0)) + notional(req.symbol, req.volume, price)
        return gross

    def evaluate(self, book: AccountBook) -> AccountRiskStateChanged | None:
        """Update `book`'s day, peak and risk state from its equity; return the event if the state changed."""
        now = self._clock.now_ns()
        equity = book.state.equity
        day = now // _NS_PER_DAY
        before = book.risk_state
        if day != book.day:
            book.day = day
            book.day_start_equity = equity
            if book.risk_state is RiskState.REDUCING and book.risk_reason.startswith("daily loss"):
                book.risk_state, book.risk_reason = RiskState.ACTIVE, ""
        if equity > book.peak_equity:  # noqa: PLR1730 - hot path: a compare beats a max() call
            book.peak_equity = equity
        for scope_key in book.risk_keys if self._limits else ():  # on every tick: no levels, no loop
            limits = self._limits.get(scope_key)
            if limits is None:
                continue
            loss = book.day_start_equity - equity
            if limits.max_daily_loss is not None and loss >= limits.max_daily_loss:
                self._escalate(
                    book, limits.daily_loss_action, f"daily loss {loss} reached {limits.max_daily_loss}"
                )
            if limits.max_drawdown_pct is not None and book.peak_equity > 0:
                dd = (book.peak_equity - equity) * _HUNDRED / book.peak_equity
                if dd >= limits.max_drawdown_pct:
                    self._escalate(
                        book, limits.drawdown_action, f"drawdown {dd:.2f}% reached {limits.max_drawdown_pct}%"
                    )
        if book.risk_state is before:
            return None
        return AccountRiskStateChanged(
            tenant=book.tenant,
            account=book.account,
            ts_ns=now,
            state=book.risk_state.value,
            reason=book.risk_reason,
        )

    @staticmethod
    def _escalate(book: AccountBook, action: BreachAction, reason: str) -> None:
        target = RiskState(action.value)
        if book.risk_state is RiskState.HALTED or book.risk_state is target:
            return
        book.risk_state, book.risk_reason = target, reason

    def reset(self, book: AccountBook, state: RiskState, reason: str) -> AccountRiskStateChanged | None:
        """Set the account's risk state by hand (e.g. lift a halt); return the event if it changed."""
        if book.risk_state is state:
            return None
        book.risk_state, book.risk_reason = state, reason
        book.peak_equity = book.state.equity
        return AccountRiskStateChanged(
            tenant=book.tenant,
            account=book.account,
            ts_ns=self._clock.now_ns(),
            state=state.value,
            reason=reason,
        )
