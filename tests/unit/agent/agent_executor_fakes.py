"""A stand-in for the broker: the trading functions of the `MetaTrader5` module over a tiny order book.

`FakeBroker` plays the trade server behind an MT5 terminal, for the executor's tests: market orders fill at
once at the ask (BUY) or bid (SELL), each fill opening its own position (a hedging account); pending
orders wait in `orders_get`; REMOVE cancels one into the history; SLTP and MODIFY change stops and prices.
Every order, position and deal keeps the request's `comment` (the client order id), as MT5 does.

With `path`, the book lives in a JSON file, so it outlives an agent process that dies in the middle of an
order, as a real trade server does. `TradingFakeTerminal` adds the tick functions of `agent_fakes`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from agent_fakes import FakeTerminal

from aitrading.common.clock import Clock
from aitrading.mt5.types import AccountInfo, OrderSendResult, TradeDeal, TradeOrder, TradePosition

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
OK = (1, "Success")
NO_IPC = (-10004, "No IPC connection")


def _ms(value: datetime | int) -> int:
    if isinstance(value, datetime):
        return (value - EPOCH) // timedelta(milliseconds=1)
    return int(value) * 1000


class FakeBroker:
    """The MT5 trading functions over an in-memory (or JSON-file) book; see the module docstring."""

    def __init__(
        self,
        clock: Clock,
        path: Path | None = None,
        *,
        login: int = 5001,
        server: str = "Broker-Demo",
        bid: float = 1.10001,
        ask: float = 1.10013,
    ) -> None:
        self.clock = clock
        self.path = path
        self.login = login
        self.server = server
        self.bid, self.ask = bid, ask
        self.book: dict[str, Any] = {
            "orders": [],
            "history_orders": [],
            "positions": [],
            "deals": [],
            "next_ticket": 1000,
            "sends": [],
        }
        if path is not None and path.exists():
            self.book = json.loads(path.read_text())
        self.unavailable = False  # every listing call fails, as with a terminal that lost its IPC link
        self.send_returns_none = False  # order_send fails before the request leaves the terminal
        self.reject_with: int | None = None  # the trade server refuses the next request with this retcode
        self.on_send: Callable[[dict[str, Any]], None] | None = None
        self._error = OK

    # -- what the tests read -------------------------------------------------------------------------

    @property
    def sends(self) -> list[dict[str, Any]]:
        """Every request `order_send` was called with, in order."""
        sends: list[dict[str, Any]] = self.book["sends"]
        return sends

    def _save(self) -> None:
        if self.path is not None:
            self.path.write_text(json.dumps(self.book))

    def _ticket(self) -> int:
        self.book["next_ticket"] += 1
        return int(self.book["next_ticket"])

    # -- MT5 functions ---------------------------------------------------------------------------------

    def last_error(self) -> tuple[int, str]:
        return self._error

    def account_info(self) -> AccountInfo | None:
        profit = sum(p["profit"] for p in self.book["positions"])
        return AccountInfo(
            login=self.login,
            leverage=100,
            margin_mode=2,
            currency_digits=2,
            balance=10_000.0,
            profit=profit,
            equity=10_000.0 + profit,
            margin=round(sum(p["volume"] for p in self.book["positions"]) * 1100.13, 2),
            server=self.server,
            currency="USD",
        )

    def order_send(self, request: dict[str, Any]) -> OrderSendResult | None:
        if self.send_returns_none:
            self._error = (-1, "Terminal: Call failed")
            return None
        self.book["sends"].append(dict(request))
        self._save()
        if self.on_send is not None:
            self.on_send(request)
        if self.reject_with is not None:
            retcode, self.reject_with = self.reject_with, None
            return OrderSendResult(retcode=retcode, bid=self.bid, ask=self.ask, comment="Rejected")
        action = request["action"]
        result = {1: self._deal, 5: self._pending, 6: self._sltp, 7: self._modify, 8: self._remove}[action](
            request
        )
        self._save()
        self._error = OK
        return result

    def orders_get(self, *, symbol: str | None = None, ticket: int | None = None, **_: Any) -> Any:
        return self._list("orders", TradeOrder, symbol=symbol, ticket=ticket)

    def positions_get(self, *, symbol: str | None = None, ticket: int | None = None, **_: Any) -> Any:
        return self._list("positions", TradePosition, symbol=symbol, ticket=ticket)

    def history_orders_get(
        self, date_from: Any = None, date_to: Any = None, *, ticket: int | None = None, **_: Any
    ) -> Any:
        rows = self._list("history_orders", TradeOrder, ticket=ticket)
        if rows is None or date_from is None:
            return rows
        lo, hi = _ms(date_from), _ms(date_to)
        return tuple(o for o in rows if lo <= o.time_setup_msc <= hi)

    def history_deals_get(
        self,
        date_from: Any = None,
        date_to: Any = None,
        *,
        ticket: int | None = None,
        position: int | None = None,
        **_: Any,
    ) -> Any:
        if self.unavailable:
            self._error = NO_IPC
            return None
        rows = [TradeDeal(**d) for d in self.book["deals"]]
        if ticket is not None:
            rows = [d for d in rows if d.order == ticket]
        if position is not None:
            rows = [d for d in rows if d.position_id == position]
        if date_from is not None:
            lo, hi = _ms(date_from), _ms(date_to)
            rows = [d for d in rows if lo <= d.time_msc <= hi]
        self._error = OK
        return tuple(rows)

    # -- internals ---------------------------------------------------------------------------------------

    def _list(self, key: str, kind: Any, *, symbol: str | None = None, ticket: int | None = None) -> Any:
        if self.unavailable:
            self._error = NO_IPC
            return None
        self._error = OK
        rows = [kind(**r) for r in self.book[key]]
        return tuple(
            r
            for r in rows
            if (symbol is None or r.symbol == symbol) and (ticket is None or r.ticket == ticket)
        )

    def _deal(self, req: dict[str, Any]) -> OrderSendResult:
        now = self.clock.now_ms()
        order = self._ticket()
        buy = req["type"] == 0
        price = self.ask if buy else self.bid
        volume = req["volume"]
        closing = req.get("position", 0)
        common = {"symbol": req["symbol"], "magic": req["magic"], "comment": req["comment"]}
        self.book["history_orders"].append(
            TradeOrder(
                ticket=order,
                time_setup=now // 1000,
                time_setup_msc=now,
                time_done=now // 1000,
                time_done_msc=now,
                type=req["type"],
                state=4,  # FILLED
                position_id=closing or order,
                volume_initial=volume,
                price_open=price,
                price_current=price,
                **common,
            )._asdict()
        )
        deal = self._ticket()
        self.book["deals"].append(
            TradeDeal(
                ticket=deal,
                order=order,
                time=now // 1000,
                time_msc=now,
                type=req["type"],
                entry=1 if closing else 0,
                position_id=closing or order,
                volume=volume,
                price=price,
                commission=-3.5,
                **common,
            )._asdict()
        )
        if closing:
            self.book["positions"] = [p for p in self.book["positions"] if p["ticket"] != closing]
        else:
            self.book["positions"].append(
                TradePosition(
                    ticket=order,
                    time=now // 1000,
                    time_msc=now,
                    time_update=now // 1000,
                    time_update_msc=now,
                    type=req["type"],
                    identifier=order,
                    volume=volume,
                    price_open=price,
                    sl=req.get("sl", 0.0),
                    tp=req.get("tp", 0.0),
                    price_current=self.bid if buy else self.ask,
                    profit=-1.2,
                    **common,
                )._asdict()
            )
        return OrderSendResult(
            retcode=10009, deal=deal, order=order, volume=volume, price=price, bid=self.bid, ask=self.ask,
            comment="Request executed", request_id=1,
        )  # fmt: skip

    def _pending(self, req: dict[str, Any]) -> OrderSendResult:
        now = self.clock.now_ms()
        order = self._ticket()
        self.book["orders"].append(
            TradeOrder(
                ticket=order,
                time_setup=now // 1000,
                time_setup_msc=now,
                type=req["type"],
                state=1,  # PLACED
                volume_initial=req["volume"],
                volume_current=req["volume"],
                price_open=req["price"],
                sl=req.get("sl", 0.0),
                tp=req.get("tp", 0.0),
                symbol=req["symbol"],
                magic=req["magic"],
                comment=req["comment"],
            )._asdict()
        )
        return OrderSendResult(
            retcode=10009, order=order, volume=req["volume"], price=req["price"], request_id=2
        )

    def _sltp(self, req: dict[str, Any]) -> OrderSendResult:
        for p in self.book["positions"]:
            if p["ticket"] == req["position"]:
                p["sl"], p["tp"] = req["sl"], req["tp"]
                return OrderSendResult(retcode=10009, request_id=3)
        return OrderSendResult(retcode=10036, comment="Position doesn't exist")  # POSITION_CLOSED

    def _modify(self, req: dict[str, Any]) -> OrderSendResult:
        for o in self.book["orders"]:
            if o["ticket"] == req["order"]:
                o["price_open"], o["sl"], o["tp"] = req["price"], req["sl"], req["tp"]
                return OrderSendResult(retcode=10009, order=o["ticket"], request_id=4)
        return OrderSendResult(retcode=10035, comment="Invalid order")  # INVALID_ORDER

    def _remove(self, req: dict[str, Any]) -> OrderSendResult:
        for o in self.book["orders"]:
            if o["ticket"] == req["order"]:
                self.book["orders"].remove(o)
                now = self.clock.now_ms()
                o |= {"state": 2, "time_done": now // 1000, "time_done_msc": now, "volume_current": 0.0}
                self.book["history_orders"].append(o)
                return OrderSendResult(retcode=10009, order=o["ticket"], request_id=5)
        return OrderSendResult(retcode=10035, comment="Invalid order")


class TradingFakeTerminal(FakeTerminal, FakeBroker):
    """A fake terminal that streams ticks (`FakeTerminal`) and trades (`FakeBroker`)."""

    def __init__(self, clock: Clock, symbols: tuple[str, ...] = ("EURUSD",), **broker: Any) -> None:
        FakeTerminal.__init__(self, symbols)
        FakeBroker.__init__(self, clock, **broker)

    def last_error(self) -> tuple[int, str]:
        return FakeBroker.last_error(self)
