"""What one account's terminal says about an order: found by its client order id, or by its effect.

The executor asks before every send and after every crash whether an earlier `order_send` of a command
already reached the trade server (see `executor` and docs/adr/0009-execution-through-agents.md). A
listing call that answers None *with an error* means the terminal cannot say, which is never taken for
"not there": `TerminalUnavailable` is raised and nothing is sent.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog

from aitrading.agent._internal import ms_datetime
from aitrading.agent.journal import JournalEntry, JournalState
from aitrading.agent.trading import RETCODE_DONE, TradingTerminal, deal_from_mt5, order_retcode
from aitrading.common.clock import Clock
from aitrading.common.errors import TemporaryError
from aitrading.model.commands import OrderRequest
from aitrading.model.deals import Deal
from aitrading.model.enums import OrderState, TradeAction
from aitrading.model.ids import client_order_id_time_ms
from aitrading.model.values import price_raw, volume_raw

__all__ = ["Found", "TerminalLookup", "TerminalUnavailable"]

_RES_S_OK = 1  # MT5's RES_S_OK: some builds answer an empty history with None and this code
_NS_PER_MS = 1_000_000
_log = structlog.get_logger("agent.lookup")


class TerminalUnavailable(TemporaryError):
    """The terminal did not answer a call the executor needs; nothing was sent, the command waits."""


@dataclass
class Found:
    """What an earlier `order_send` left in the terminal (the makings of a recovered report)."""

    order: int = 0
    deal: int = 0
    retcode: int = RETCODE_DONE
    volume: int = 0
    price: int = 0
    deals: list[Deal] = field(default_factory=list)


class TerminalLookup:
    """Reads of one account's terminal: listings, an order's deals, and the search for a sent order."""

    def __init__(self, terminal: TradingTerminal, clock: Clock, *, margin_ms: int) -> None:
        self.terminal = terminal
        self._clock = clock
        self._margin_ms = margin_ms

    def listing(self, name: str, *args: Any, **kwargs: Any) -> tuple[Any, ...]:
        """Call a listing function; an empty answer is (), a failure raises `TerminalUnavailable`."""
        result = getattr(self.terminal, name)(*args, **kwargs)
        if result is None:
            code, text = self.terminal.last_error()
            if code != _RES_S_OK:
                raise TerminalUnavailable(f"{name} failed: {code} {text}")
            return ()
        return tuple(result)

    def window(self, since_ms: int) -> tuple[datetime, datetime]:
        """History bounds from `since_ms` to now, widened by the margin on both sides.

        The margin (a day by default) covers terminals whose history times are the trade server's local
        time rather than UTC; a wider window costs a longer list, never a wrong answer.
        """
        return ms_datetime(since_ms - self._margin_ms), ms_datetime(self._clock.now_ms() + self._margin_ms)

    def digits(self) -> int:
        """The account currency's digits (2 if the terminal cannot say)."""
        info = self.terminal.account_info()
        return 2 if info is None else int(info.currency_digits)

    def deals_of(self, order: int) -> list[Deal]:
        """The terminal's deals of `order`; none (logged) if it cannot say: the next snapshot has them."""
        try:
            deals = self.listing("history_deals_get", ticket=order)
        except TerminalUnavailable as exc:
            _log.warning("deals_unavailable", order=order, error=str(exc))
            return []
        digits = self.digits()
        return sorted((deal_from_mt5(d, digits) for d in deals), key=lambda d: (d.time_ns, d.ticket))

    def find(self, req: OrderRequest, entry: JournalEntry, *, sending: bool = False) -> Found | None:
        """Look for what an earlier `order_send` of this command left in the terminal."""
        if req.opens_order:
            return self._by_comment(req, entry)
        if sending or entry.state is JournalState.SENDING:
            return self._by_effect(req)
        return None  # never sent: nothing to find, and sending it is what was asked

    # -- internals ---------------------------------------------------------------------------------

    def _by_comment(self, req: OrderRequest, entry: JournalEntry) -> Found | None:
        cid = req.client_order_id
        for order in _matching(self.listing("orders_get"), cid):
            return self._found_order(order)
        for pos in _matching(self.listing("positions_get"), cid):
            deals = self.deals_of(int(pos.identifier))
            return Found(
                order=int(pos.identifier),
                deal=deals[0].ticket if deals else 0,
                volume=volume_raw(float(pos.volume)),
                price=price_raw(float(pos.price_open)),
                deals=deals,
            )
        window = self.window(_created_ms(req, entry))
        for order in _matching(self.listing("history_orders_get", *window), cid):
            return self._found_order(order)
        for deal in _matching(self.listing("history_deals_get", *window), cid):
            deals = self.deals_of(int(deal.order))
            return Found(
                order=int(deal.order),
                deal=int(deal.ticket),
                volume=sum(d.volume for d in deals) or volume_raw(float(deal.volume)),
                price=price_raw(float(deal.price)),
                deals=deals,
            )
        return None

    def _found_order(self, order: Any) -> Found:
        ticket = int(order.ticket)
        deals = self.deals_of(ticket)
        filled = sum(d.volume for d in deals if d.is_trade)
        return Found(
            order=ticket,
            deal=deals[0].ticket if deals else 0,
            retcode=order_retcode(order),
            volume=filled or volume_raw(float(order.volume_initial)),
            price=deals[0].price if deals else price_raw(float(order.price_open)),
            deals=deals,
        )

    def _by_effect(self, req: OrderRequest) -> Found | None:
        """For SLTP/MODIFY/REMOVE: does the terminal already show what the request asked for?"""
        if req.action is TradeAction.SLTP:
            kwargs: dict[str, Any] = {"ticket": req.position} if req.position else {"symbol": req.symbol}
            for p in self.listing("positions_get", **kwargs):
                if price_raw(float(p.sl)) == req.sl and price_raw(float(p.tp)) == req.tp:
                    return Found()
        elif req.action is TradeAction.MODIFY:
            for o in self.listing("orders_get", ticket=req.order):
                same = (price_raw(float(o.price_open)), price_raw(float(o.sl)), price_raw(float(o.tp)))
                if same == (req.price, req.sl, req.tp):
                    return Found(order=req.order)
        elif req.action is TradeAction.REMOVE:
            if self.listing("orders_get", ticket=req.order):
                return None
            for o in self.listing("history_orders_get", ticket=req.order):
                if int(o.state) == OrderState.CANCELED:
                    return Found(order=req.order)
        return None


def _matching(items: Iterable[Any], cid: str) -> Iterable[Any]:
    return (item for item in items if str(item.comment) == cid)


def _created_ms(req: OrderRequest, entry: JournalEntry) -> int:
    """When the order can have been sent at the earliest: the id's time, else the request's or receipt's."""
    candidates = [req.ts_ns // _NS_PER_MS if req.ts_ns > 0 else entry.received_ns // _NS_PER_MS]
    with suppress(ValueError):  # an id not made by ClientOrderIdGenerator: the request's time must do
        candidates.append(client_order_id_time_ms(req.client_order_id))
    return min(candidates)
