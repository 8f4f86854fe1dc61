"""The engine's state and plumbing, shared by the submit path (`engine.engine`) and what comes back
(`engine.execution`): books, last ticks, symbol specs, the outbox, money changes and order transitions.

`TradingEngine` is the public class; this module is internal to the engine package.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Awaitable, Callable, Mapping
from decimal import Decimal
from typing import Any, NamedTuple, TypeVar

import msgspec

from aitrading.common.bus import Bus, Subscription
from aitrading.common.bus.codec import Message
from aitrading.common.clock import Clock
from aitrading.engine.books import AccountBook, AccountProfit, account_profit_fn
from aitrading.engine.ports import AuditTrail, BookStore, OrderLog
from aitrading.engine.risk import RiskEngine
from aitrading.engine.store import EngineStore
from aitrading.engine.writer import OrderWriter
from aitrading.model import calc
from aitrading.model.checks import Retcode
from aitrading.model.commands import OrderRequest
from aitrading.model.enums import OrderState
from aitrading.model.events import AccountRiskStateChanged, AccountUpdated, OrderAccepted, OrderEvent
from aitrading.model.market import Tick
from aitrading.model.orders import Order, transition
from aitrading.model.symbols import SymbolSpec
from aitrading.model.values import PRICE_SCALE, VOLUME_SCALE
from aitrading.storage.audit import AuditLog

__all__ = ["EngineCore", "MarketOpenFn", "SubmitResult", "plain"]

_T = TypeVar("_T")

MarketOpenFn = Callable[[str, str, int], bool]
"""(feed, symbol, now_ns) → whether the symbol trades now."""

_ACCOUNT_EVENT_NS = 250_000_000  # at most 4 AccountUpdated per second per account from ticks
_CACHE_MAX = 4096


class SubmitResult(NamedTuple):
    """What `submit` did: the order as it now stands, the retcode, and the denial reason if refused."""

    order: Order
    retcode: int
    reason: str = ""
    text: str = ""

    @property
    def denied(self) -> bool:
        """True when the platform refused the order."""
        return self.order.state is OrderState.REJECTED


class _Rates:
    """Quotes of one feed, for converting money between currencies."""

    __slots__ = ("_feed", "_ticks")

    def __init__(self, ticks: dict[tuple[str, str], Tick], feed: str) -> None:
        self._ticks, self._feed = ticks, feed

    def quote(self, symbol: str) -> tuple[int, int] | None:
        tick = self._ticks.get((self._feed, symbol))
        return None if tick is None else (tick.bid, tick.ask)


class EngineCore:
    """The engine's state (books, ticks, specs, pending requests) and what both halves of it need."""

    def __init__(
        self,
        bus: Bus,
        store: BookStore,
        audit: AuditTrail,
        clock: Clock,
        specs: Mapping[str, SymbolSpec],
        *,
        market_open: MarketOpenFn | None = None,
        writer: OrderLog | None = None,
    ) -> None:
        self._bus = bus
        self._store: BookStore = store
        self._audit: AuditTrail = audit
        self._clock = clock
        self._specs = dict(specs)
        self._account_specs: dict[tuple[str, str], dict[str, SymbolSpec]] = {}
        self._market_open = market_open or (lambda _feed, _symbol, _now: True)
        if writer is None:  # the database's group-commit writer (`engine.memory` brings its own)
            if not isinstance(store, EngineStore) or not isinstance(audit, AuditLog):
                raise TypeError("pass writer= with a store and audit log that are not the database's")
            writer = OrderWriter(store, audit)
        self._writer: OrderLog = writer
        self.risk = RiskEngine(clock)
        self.books: dict[tuple[str, str], AccountBook] = {}
        self._by_feed: dict[str, list[AccountBook]] = {}
        self._by_feed_key: tuple[int, int] = (-1, -1)
        self._feeds: dict[tuple[str, str], str] = {}
        self._ticks: dict[tuple[str, str], Tick] = {}
        self._feed_rates: dict[str, _Rates] = {}
        self._notionals: dict[tuple[str, str, str, str, int], Callable[[str, int, int], Decimal]] = {}
        self._profit_fns: dict[tuple[str, str], tuple[str, AccountProfit]] = {}
        """Per account: the feed whose quotes its profit function converts with, and the function."""
        self._last_account_event: dict[tuple[str, str], int] = {}
        self._requests: dict[tuple[str, str, str], OrderRequest] = {}
        """The requests of working orders by (tenant, account, client order id): ids are unique per account
        only, and two tenants may well choose the same one."""
        self._outbox: list[tuple[str, Message]] = []
        self._subs: list[Subscription] = []
        self._background: set[asyncio.Task[None]] = set()
        self._lock = asyncio.Lock()
        self.counters: dict[str, int] = {"submitted": 0, "denied": 0, "reports": 0, "alerts": 0, "resent": 0}

    # --- queries -----------------------------------------------------------------------------------------
    def last_tick(self, feed: str, symbol: str) -> Tick | None:
        """Return the last tick of `symbol` on `feed`."""
        return self._ticks.get((feed, symbol))

    def book(self, tenant: str, account: str) -> AccountBook | None:
        """Return the books of one account of `tenant` (None if the tenant has no such account)."""
        return self.books.get((tenant, account))

    def accounts_of(self, tenant: str) -> list[AccountBook]:
        """Return the tenant's accounts."""
        return [b for (t, _), b in self.books.items() if t == tenant]

    def books_on(self, feed: str) -> list[AccountBook]:
        """Return the accounts whose terminal is on `feed` (indexed; rebuilt when books or feeds change)."""
        count, generation = self._by_feed_key
        if count != len(self.books) or generation != AccountBook.feed_generation:
            index: dict[str, list[AccountBook]] = {}
            for book in self.books.values():
                index.setdefault(book.feed, []).append(book)
            self._by_feed, self._by_feed_key = index, (len(self.books), AccountBook.feed_generation)
        return self._by_feed.get(feed, [])

    def spec(self, symbol: str) -> SymbolSpec:
        """Return the symbol's default spec (the kernel's); raise `KeyError` if unknown."""
        return self._specs[symbol]

    def spec_of(self, book: AccountBook, symbol: str) -> SymbolSpec | None:
        """Return the spec of `symbol` at `book`'s terminal (reported by its agent), else the default one."""
        reported = self._account_specs.get((book.tenant, book.account))
        if reported is not None:
            spec = reported.get(symbol)
            if spec is not None:
                return spec
        return self._specs.get(symbol)

    def _spec_fn(self, book: AccountBook) -> Callable[[str], SymbolSpec]:
        def spec(symbol: str) -> SymbolSpec:
            found = self.spec_of(book, symbol)
            if found is None:
                raise KeyError(symbol)
            return found

        return spec

    def _rates(self, feed: str) -> _Rates:
        rates = self._feed_rates.get(feed)  # one per feed: it reads the ticks as they come
        if rates is None:
            if len(self._feed_rates) >= _CACHE_MAX:
                self._feed_rates.clear()
            rates = self._feed_rates[feed] = _Rates(self._ticks, feed)
        return rates

    def _profit_fn(self, book: AccountBook) -> AccountProfit:
        fn = book.profit_fn  # the account's, kept by its books too (a lookup less on every tick)
        if fn is None:
            key = (book.tenant, book.account)
            known = self._profit_fns.get(key)
            if known is not None and known[0] == book.feed:
                fn = known[1]
            else:  # new, or the account's terminal moved to another feed: convert with its quotes
                fn = account_profit_fn(
                    self._spec_fn(book), book.state.currency, self._rates(book.feed), book.state.digits
                )
                self._profit_fns[key] = (book.feed, fn)
            book.profit_fn = fn
        return fn

    def _notional_of(self, book: AccountBook) -> Callable[[str, int, int], Decimal]:
        """`notional(book)`, made once per account, feed, currency and digits (it checks every order)."""
        key = (book.tenant, book.account, book.feed, book.state.currency, book.state.digits)
        fn = self._notionals.get(key)
        if fn is None:
            if len(self._notionals) >= _CACHE_MAX:
                self._notionals.clear()
            fn = self._notionals[key] = self.notional(book)
        return fn

    def notional(self, book: AccountBook) -> Callable[[str, int, int], Decimal]:
        """Return |lots × contract size × price| of a symbol in the account currency."""
        rates = self._rates(book.feed)
        spec_of = self._spec_fn(book)
        currency, digits = book.state.currency, book.state.digits

        def value(symbol: str, volume: int, price: int) -> Decimal:
            spec = spec_of(symbol)
            size_num, size_den = _ratio(spec.contract_size)
            # One numerator over one denominator, no `Fraction`: this runs for every position on every order.
            num = abs(volume * price) * size_num
            den = VOLUME_SCALE * PRICE_SCALE * size_den
            if spec.currency_profit != currency:
                with contextlib.suppress(ValueError):  # no quote converts it: valued 1:1, as before
                    rate = calc.conversion_rate(
                        spec.currency_profit, currency, rates, use_ask_direct=True, use_ask_inverse=False
                    )
                    num, den = num * rate.numerator, den * rate.denominator
            return calc.money_of(abs(num), den, digits)

        return value

    # --- plumbing ----------------------------------------------------------------------------------------
    async def _locked(self, work: Awaitable[_T]) -> _T:
        """Run `work` alone, then publish what it produced (outside the lock, so that a subscriber that
        answers at once — the in-process bus delivers inline — cannot deadlock on the engine)."""
        async with self._lock:
            result = await work
            out, self._outbox = self._outbox, []
        if out:  # most ticks produce nothing to publish
            await self._publish(out)
        return result

    async def _publish(self, out: list[tuple[str, Message]]) -> None:
        for subject, msg in out:
            await self._bus.publish(subject, msg)

    def _emit(self, book: AccountBook, event: Message) -> None:
        self._outbox.append((book.event_subject, event))

    async def _after_money_change(self, book: AccountBook, *, from_tick: bool = False) -> None:
        changed = self.risk.evaluate(book)
        if changed is not None:
            await self._risk_changed(book, changed)
        self._account_updated(book, from_tick=from_tick)

    async def _risk_changed(self, book: AccountBook, changed: AccountRiskStateChanged) -> None:
        await self._audit.append(book.tenant, "risk-engine", "risk.state", plain(changed))
        self._emit(book, changed)
        await self._save_account(book)

    def _account_updated(self, book: AccountBook, *, from_tick: bool) -> None:
        """Emit `AccountUpdated` (from ticks at most every `_ACCOUNT_EVENT_NS` per account)."""
        now = self._clock.now_ns()
        key = (book.tenant, book.account)
        if from_tick and now - self._last_account_event.get(key, 0) < _ACCOUNT_EVENT_NS:
            return
        self._last_account_event[key] = now
        self._emit(
            book, AccountUpdated(tenant=book.tenant, account=book.account, ts_ns=now, state=book.state)
        )

    async def _accept(
        self, book: AccountBook, order: Order, ticket: int, ts_ns: int, retcode: int = int(Retcode.DONE)
    ) -> Order:
        """The terminal took the order (its report said so, or reconciliation found it there)."""
        accepted = OrderAccepted(
            tenant=book.tenant,
            account=book.account,
            client_order_id=order.client_order_id,
            ts_ns=ts_ns,
            ticket=ticket,
            retcode=retcode,
        )
        return await self._apply(book, order, accepted)

    async def _apply(self, book: AccountBook, order: Order, event: OrderEvent) -> Order:
        updated = transition(order, event)
        book.put_order(updated)
        key = (book.tenant, book.account, order.client_order_id)
        if updated is not order:  # a redelivered event changes nothing (and must not drop a stored request)
            await self._store.save_order(updated, self._requests.get(key))
        if updated.state.is_terminal:  # nothing will be sent again: only working orders keep theirs
            self._requests.pop(key, None)
        await self._audit.append(
            book.tenant,
            "engine",
            "order.state",
            {
                "client_order_id": order.client_order_id,
                "event": type(event).__name__,
                "state": updated.state.name,
            },
        )
        self._emit(book, event)
        return updated

    async def _save_account(self, book: AccountBook) -> None:
        await self._store.save_account(
            book.tenant,
            book.account,
            book.feed,
            book.state,
            book.risk_state,
            book.risk_reason,
            book.peak_equity,
        )

    async def _save_positions(self, book: AccountBook) -> None:
        await self._store.replace_positions(book.tenant, book.account, book.positions.values())


@functools.lru_cache(maxsize=1024)
def _ratio(value: Decimal) -> tuple[int, int]:
    return value.as_integer_ratio()


_AS_IS = frozenset({int, str, float, bool, type(None)})
"""Types `msgspec.to_builtins` returns unchanged: most fields of an audited request or deal (and it
writes a `Decimal` as its `str`)."""
_ALIKE: dict[type, bool] = {}
"""Struct types by whether `msgspec.to_builtins` writes them as `plain` does (no tag, renamed fields,
omitted defaults or arrays), given that no field holds a struct."""
_NOT_STRUCTS: set[type] = set()
"""Types of field values `plain` hands to `msgspec.to_builtins` as a struct does (no struct, no UNSET)."""
_KNOWN_MAX = 1024


def plain(value: object) -> Any:
    """Return `value` as JSON-ready builtins: structs (bus messages too) as objects, Decimals as strings."""
    if isinstance(value, msgspec.Struct):
        kind = type(value)
        alike = _ALIKE.get(kind)
        if alike is None:
            alike = _builtins_alike(kind)
        if alike:  # one call instead of a loop over the fields (an order's request, a deal: every order)
            kinds = set(map(type, msgspec.structs.astuple(value)))
            if kinds <= _NOT_STRUCTS or _no_structs(kinds):
                return msgspec.to_builtins(value, enc_hook=str)
        out: dict[str, Any] = {}
        for f in value.__struct_fields__:
            v = getattr(value, f)
            kind = type(v)
            out[f] = v if kind in _AS_IS else str(v) if kind is Decimal else plain(v)
        return out
    return msgspec.to_builtins(value, enc_hook=str)


def _builtins_alike(kind: type[msgspec.Struct]) -> bool:
    config = kind.__struct_config__
    alike = (
        config.tag is None
        and config.tag_field is None
        and not config.array_like
        and not config.omit_defaults
        and tuple(kind.__struct_encode_fields__) == tuple(kind.__struct_fields__)
    )
    if len(_ALIKE) >= _KNOWN_MAX:
        _ALIKE.clear()
    _ALIKE[kind] = alike
    return alike


def _no_structs(kinds: set[type]) -> bool:
    """Tell whether values of `kinds` are converted alike inside and outside a struct (and remember it)."""
    for kind in kinds:
        if issubclass(kind, msgspec.Struct) or kind is msgspec.UnsetType:
            return False
    if len(_NOT_STRUCTS) >= _KNOWN_MAX:
        _NOT_STRUCTS.clear()
    _NOT_STRUCTS.update(kinds)
    return True
