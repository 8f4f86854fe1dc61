"""Execute trade commands at the MT5 terminal exactly once per client order id, and report the account.

A `TradeCommand` from the bridge goes through `OrderJournal` (see its states) and the terminal:

1. The journal stores it as `received`, or already knows its client order id: a command already `done`
   is answered from the journal (the same report again), one being executed now is ignored (its report
   is on the way).
2. Before sending, the executor looks for the client order id (the `comment` of every order it sends) in
   the terminal: pending orders, open positions, then the orders and deals of the history around the
   id's creation time. Found: it reports what it found with `recovered=True` and sends nothing.
3. Otherwise it journals `sending` (fsync'd), calls `order_send`, and journals `done` with the report.
   A crash between those two leaves `sending`; after the restart step 2 finds the order, so it is never
   sent twice. (Actions that open no order, SLTP/MODIFY/REMOVE, cannot be found by comment: for them the
   executor checks whether the terminal already shows their effect, and otherwise sends them again,
   which is harmless because applying the same change twice leaves one change.)
4. The report goes to the bridge and stays in the journal until the bridge's `ReportAck`; unacked reports
   are sent again after every reconnect.

If the terminal cannot be asked (a lookup returns None with an error), the executor sends nothing and
answers nothing: the command stays where it was in the journal and the engine's resend tries again.

After every execution, and every `snapshot_interval_s`, the executor sends an `AccountSnapshot` per
account (account, positions, pending orders, deals of the last `deals_window_s`). After connecting, and when
the engine asks (`SpecsRequest`), it sends `SymbolSpecs`: the terminal's `symbol_info` of the symbols the
account trades.

Terminal calls block (IPC to the terminal, a round trip to the trade server), so each account gets its
own one-thread executor: an order never waits behind tick polling, ticks never wait behind an order,
and one account's calls never run concurrently. See docs/adr/0009-execution-through-agents.md.

Test hook: with `AITRADING_AGENT_CRASH_AFTER_ORDER_SEND=1` in the environment (or
`crash_after_order_send=True`) the process ends with `os._exit(137)` right after `order_send` returns,
before the result is journalled: the crash the journal and the history lookup exist for.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar

import structlog

from aitrading.agent.journal import JournalEntry, JournalState, OrderJournal
from aitrading.agent.lookup import Found, TerminalLookup, TerminalUnavailable
from aitrading.agent.trading import (
    RETCODE_ERROR,
    RETCODE_INVALID,
    SUCCESS_RETCODES,
    TradingTerminal,
    account_state_from_mt5,
    deal_from_mt5,
    pending_from_mt5,
    position_from_mt5,
    request_dict,
    spec_from_mt5,
)
from aitrading.common import metrics
from aitrading.common.bus.codec import Message
from aitrading.common.clock import Clock
from aitrading.model.commands import OrderRequest, TradeCommand, request_problems
from aitrading.model.ids import AccountId, TenantId
from aitrading.model.values import price_raw, volume_raw
from aitrading.model.wire import AccountSnapshot, OrderReport, ReportAck, SpecsRequest, SymbolSpecs

__all__ = [
    "CRASH_ENV",
    "ExecutionCounts",
    "OrderExecutor",
    "TerminalUnavailable",
    "TradingAccount",
    "crash_hook_enabled",
]

CRASH_ENV = "AITRADING_AGENT_CRASH_AFTER_ORDER_SEND"
CRASH_EXIT_CODE = 137
_NS_PER_MS = 1_000_000
_NS_PER_S = 1_000_000_000
_T = TypeVar("_T")

_log = structlog.get_logger("agent.executor")
_outcomes = metrics.counter(
    "agent_orders", "Trade commands the agent finished, by outcome", ("account", "outcome")
)

Send = Callable[[Message], Awaitable[bool]]
"""Send a message to the bridge; return whether it went out (False: not connected)."""


def crash_hook_enabled(environ: dict[str, str] | None = None) -> bool:
    """Tell whether the crash-after-`order_send` test hook is on in `environ` (default: `os.environ`)."""
    return (os.environ if environ is None else environ).get(CRASH_ENV, "") == "1"


def _exit_now() -> NoReturn:
    os._exit(CRASH_EXIT_CODE)


@dataclass(frozen=True)
class TradingAccount:
    """One trading account the agent executes for: its id on the bus, its feed and its terminal."""

    account: AccountId
    feed: str
    terminal: TradingTerminal
    symbols: tuple[str, ...] = ()
    """The symbols it trades, whose specs the agent reports (empty: the terminal's visible symbols)."""


@dataclass
class ExecutionCounts:
    """Commands finished since the agent started, by outcome."""

    executed: int = 0
    """Sent with `order_send` and accepted (PLACED, DONE, DONE_PARTIAL)."""
    recovered: int = 0
    """Found already executed in the terminal and reported without sending again."""
    failed: int = 0
    """Refused by the trade server or the agent, or `order_send` itself failed."""
    duplicates: int = 0
    """Commands the journal had already answered (answered again from the journal)."""
    foreign: int = 0
    """Commands for an account or tenant this agent does not execute for (ignored)."""


class OrderExecutor:
    """Run trade commands against the accounts' terminals, exactly once per client order id."""

    def __init__(
        self,
        journal: OrderJournal,
        accounts: Sequence[TradingAccount],
        *,
        clock: Clock,
        send: Send | None = None,
        snapshot_interval_s: float = 5.0,
        deals_window_s: float = 86_400.0,
        lookup_margin_s: float = 86_400.0,
        retention_s: float = 30 * 86_400.0,
        crash_after_order_send: bool | None = None,
        crash: Callable[[], Any] = _exit_now,
    ) -> None:
        if snapshot_interval_s <= 0 or deals_window_s <= 0 or lookup_margin_s < 0:
            raise ValueError("snapshot_interval_s and deals_window_s must be positive, lookup_margin_s >= 0")
        self.journal = journal
        self.accounts: dict[str, TradingAccount] = {a.account: a for a in accounts}
        if len(self.accounts) != len(accounts):
            raise ValueError("two terminals declare the same trading account")
        self.counts = ExecutionCounts()
        self.tenant: str = ""
        """The tenant the bridge says this agent belongs to (from its welcome); empty until then."""
        self.snapshot_interval_s = snapshot_interval_s
        self.send = send
        self._clock = clock
        self._deals_window_ns = round(deals_window_s * _NS_PER_S)
        self._retention_ns = round(retention_s * _NS_PER_S)
        self._crash_after_send = (
            crash_hook_enabled() if crash_after_order_send is None else crash_after_order_send
        )
        self._crash = crash
        self._busy: set[str] = set()
        self._count_lock = threading.Lock()
        self._snapshot_failing: set[str] = set()
        margin_ms = round(lookup_margin_s * 1000)
        self._lookups: dict[str, TerminalLookup] = {
            a.account: TerminalLookup(a.terminal, clock, margin_ms=margin_ms) for a in accounts
        }
        self._pools: dict[str, ThreadPoolExecutor] = {
            a.account: ThreadPoolExecutor(1, thread_name_prefix=f"mt5-exec-{a.account}") for a in accounts
        }
        if self._crash_after_send:
            _log.warning("crash_hook_enabled", env=CRASH_ENV, hint="exits after the next order_send")

    # -- the synchronous core (runs on the account's thread) -----------------------------------------

    def execute(self, command: TradeCommand) -> OrderReport | None:
        """Execute `command` once; return its report (None when it belongs to no account of this agent).

        Raises `TerminalUnavailable` when the terminal cannot be asked whether the order already exists.
        """
        req = command.request
        acct = self.accounts.get(req.account)
        if acct is None:
            return None
        entry, _ = self.journal.receive(command, self._clock.now_ns())
        if entry.state in (JournalState.DONE, JournalState.ACKED):
            self._count("duplicates")
            return entry.report
        if entry.state is JournalState.RECEIVED and (problems := request_problems(req)):
            return self._finish(acct, req, _failure(req, RETCODE_INVALID, "; ".join(problems), self._now()))
        found = self._lookups[acct.account].find(req, entry)
        if found is not None:
            return self._finish(acct, req, found)
        if entry.state is JournalState.RECEIVED:
            self.journal.mark_sending(req.client_order_id, self._clock.now_ns())
        result = acct.terminal.order_send(request_dict(req))
        if self._crash_after_send:
            self._crash()
        if result is None:
            code, text = acct.terminal.last_error()
            _log.warning("order_send_failed", client_order_id=req.client_order_id, code=code, error=text)
            found = self._lookups[acct.account].find(req, entry, sending=True)
            if found is not None:
                return self._finish(acct, req, found)
            return self._finish(
                acct, req, _failure(req, RETCODE_ERROR, f"order_send failed: {code} {text}", self._now())
            )
        return self._finish(acct, req, self._report_of(acct, req, result))

    def recover(self, account: str | None = None) -> list[OrderReport]:
        """Settle commands left `sending` by a crash that the terminal shows executed; return their reports.

        Only `account`'s commands when given. Commands not found stay where they are: the engine resends
        what it has not heard back about, and `execute` then sends them (after looking once more).
        """
        reports = []
        for entry in self.journal.entries(JournalState.SENDING):
            acct = self.accounts.get(entry.account)
            if acct is None or (account is not None and entry.account != account):
                continue
            req = entry.command.request
            try:
                found = self._lookups[acct.account].find(req, entry)
            except TerminalUnavailable as exc:
                _log.warning("recovery_postponed", client_order_id=entry.client_order_id, error=str(exc))
                continue
            if found is not None:
                report = self._finish(acct, req, found)
                reports.append(report)
        return reports

    def snapshot(self, account: str) -> AccountSnapshot | None:
        """Return the terminal's view of `account` now (None without a tenant or an answer)."""
        acct = self.accounts[account]
        if not self.tenant:
            return None
        term = acct.terminal
        info = term.account_info()
        if info is None:
            return None
        digits = int(info.currency_digits)
        now_ns = self._clock.now_ns()
        from_ns = now_ns - self._deals_window_ns
        look = self._lookups[account]
        try:
            positions = look.listing("positions_get")
            orders = look.listing("orders_get")
            deals = look.listing("history_deals_get", *look.window(from_ns // _NS_PER_MS))
        except TerminalUnavailable as exc:
            if account not in self._snapshot_failing:  # once per outage, not every few seconds
                _log.warning("snapshot_failed", account=account, error=str(exc))
            self._snapshot_failing.add(account)
            return None
        self._snapshot_failing.discard(account)
        return AccountSnapshot(
            tenant=TenantId(self.tenant),
            account=acct.account,
            ts_ns=now_ns,
            account_state=account_state_from_mt5(info),
            positions=[position_from_mt5(p, digits) for p in positions],
            orders=[pending_from_mt5(o) for o in orders],
            deals_from_ns=from_ns,
            deals=sorted(
                (deal_from_mt5(d, digits) for d in deals if int(d.time_msc) * _NS_PER_MS >= from_ns),
                key=lambda d: (d.time_ns, d.ticket),
            ),
        )

    def symbol_specs(self, account: str, symbols: Sequence[str] = ()) -> SymbolSpecs | None:
        """Return the terminal's specs of `symbols` (default: those the account trades), None if it has none.

        Symbols the terminal does not know are left out; a terminal without `symbol_info` reports nothing.
        """
        acct = self.accounts[account]
        symbol_info = getattr(acct.terminal, "symbol_info", None)
        if not self.tenant or symbol_info is None:
            return None
        names = list(symbols) or list(acct.symbols) or _visible_symbols(acct.terminal)
        specs = []
        for name in dict.fromkeys(names):
            info = symbol_info(name)
            if info is None:
                continue
            try:
                specs.append(spec_from_mt5(info))
            except (AttributeError, TypeError, ValueError) as exc:  # a field the terminal left out
                _log.warning("symbol_spec_unreadable", account=account, symbol=name, error=str(exc))
        if not specs:
            return None
        return SymbolSpecs(
            tenant=TenantId(self.tenant), account=acct.account, ts_ns=self._clock.now_ns(), specs=specs
        )

    # -- async facade -------------------------------------------------------------------------------

    async def start(self) -> list[OrderReport]:
        """Forget long-acknowledged commands and settle those a crash left `sending`."""
        cutoff = self._clock.now_ns() - self._retention_ns
        pruned = await asyncio.to_thread(self.journal.prune, cutoff)
        if pruned:
            _log.info("journal_pruned", entries=pruned)
        reports: list[OrderReport] = []
        for account in self.accounts:
            reports += await self._on_thread(account, self.recover, account)
        return reports

    async def submit(self, command: TradeCommand) -> OrderReport | None:
        """Execute a command from the bridge, deliver its report and a fresh snapshot; return the report."""
        req = command.request
        if req.account not in self.accounts or (self.tenant and req.tenant != self.tenant):
            self._count("foreign")
            _log.warning(
                "command_for_foreign_account",
                client_order_id=req.client_order_id,
                tenant=req.tenant,
                account=req.account,
            )
            return None
        cid = req.client_order_id
        if cid in self._busy:
            self._count("duplicates")
            return None  # being executed now; that run reports
        self._busy.add(cid)
        try:
            report = await self._on_thread(req.account, self.execute, command)
        except TerminalUnavailable as exc:
            _log.warning("execution_postponed", client_order_id=cid, error=str(exc))
            return None
        finally:
            self._busy.discard(cid)
        if report is not None:
            await self._deliver(report)
            await self.send_snapshot(req.account)
        return report

    async def acked(self, ack: ReportAck) -> bool:
        """Record the bridge's acknowledgement of a report; return whether it was waiting for one."""
        return await asyncio.to_thread(self.journal.mark_acked, ack.client_order_id, self._clock.now_ns())

    async def on_connected(self, tenant: str) -> None:
        """After a (re)connect: remember the tenant, send every unacknowledged report, then snapshots."""
        if tenant:
            self.tenant = tenant
        for entry in await asyncio.to_thread(self.journal.entries, JournalState.DONE):
            if entry.report is not None and not await self._deliver(entry.report):
                return  # the link dropped again; the next connect resends
        for account in self.accounts:
            await self.send_snapshot(account)
        for account in self.accounts:
            await self.send_specs(account)

    async def send_specs(self, account: str, symbols: Sequence[str] = ()) -> bool:
        """Read and send the account's symbol specs; return whether they went out."""
        if self.send is None or not self.tenant:
            return False
        specs = await self._on_thread(account, self.symbol_specs, account, symbols)
        return specs is not None and await self.send(specs)

    async def on_specs_request(self, ask: SpecsRequest) -> bool:
        """Answer the engine's `SpecsRequest` for one of this agent's accounts; return whether it went out."""
        if ask.account not in self.accounts or (self.tenant and ask.tenant != self.tenant):
            return False
        return await self.send_specs(ask.account, ask.symbols)

    async def send_snapshot(self, account: str) -> bool:
        """Take and send a snapshot of `account`; return whether it went out."""
        if self.send is None or not self.tenant:
            return False
        snap = await self._on_thread(account, self.snapshot, account)
        return snap is not None and await self.send(snap)

    async def run_snapshots(self, connected: Callable[[], bool]) -> None:
        """Send every account's snapshot every `snapshot_interval_s` while `connected()`; until cancelled."""
        while True:
            await self._clock.sleep(self.snapshot_interval_s)
            if not connected():
                continue
            for account in self.accounts:
                try:
                    await self.send_snapshot(account)
                except Exception:  # a terminal hiccup must not end the loop
                    _log.exception("snapshot_error", account=account)

    def in_flight(self) -> list[JournalEntry]:
        """Return the journal's entries not yet acknowledged (for the status API)."""
        return self.journal.in_flight()

    def close(self) -> None:
        """Wait for running terminal calls (so their results are journalled), then stop the threads."""
        for pool in self._pools.values():
            pool.shutdown(wait=True, cancel_futures=True)

    # -- internals ----------------------------------------------------------------------------------

    async def _on_thread(self, account: str, fn: Callable[..., _T], *args: Any) -> _T:
        return await asyncio.get_running_loop().run_in_executor(self._pools[account], fn, *args)

    async def _deliver(self, report: OrderReport) -> bool:
        if self.send is None:
            return False
        return await self.send(report)

    def _now(self) -> int:
        return self._clock.now_ns()

    def _count(self, outcome: str) -> None:
        with self._count_lock:  # accounts' threads finish concurrently
            setattr(self.counts, outcome, getattr(self.counts, outcome) + 1)

    def _finish(self, acct: TradingAccount, req: OrderRequest, result: OrderReport | Found) -> OrderReport:
        """Journal the command's report (built from what was found, for a recovery) and count it."""
        recovered = isinstance(result, Found)
        report = (
            OrderReport(
                client_order_id=req.client_order_id,
                tenant=req.tenant,
                account=req.account,
                retcode=result.retcode,
                ts_ns=self._now(),
                order=result.order,
                deal=result.deal,
                volume=result.volume,
                price=result.price,
                comment=req.client_order_id,
                recovered=True,
                deals=result.deals,
            )
            if isinstance(result, Found)
            else result
        )
        self.journal.mark_done(req.client_order_id, report, self._now())
        outcome = "recovered" if recovered else "executed" if report.retcode in SUCCESS_RETCODES else "failed"
        self._count(outcome)
        _outcomes.labels(acct.account, outcome).inc()
        _log.info(
            "order_" + outcome,
            client_order_id=req.client_order_id,
            account=acct.account,
            retcode=report.retcode,
            order=report.order,
        )
        return report

    def _report_of(self, acct: TradingAccount, req: OrderRequest, result: Any) -> OrderReport:
        order = int(result.order)
        return OrderReport(
            client_order_id=req.client_order_id,
            tenant=req.tenant,
            account=req.account,
            retcode=int(result.retcode),
            ts_ns=self._now(),
            order=order,
            deal=int(result.deal),
            volume=volume_raw(float(result.volume)),
            price=price_raw(float(result.price)),
            bid=price_raw(float(result.bid)),
            ask=price_raw(float(result.ask)),
            comment=str(result.comment),
            retcode_external=int(result.retcode_external),
            deals=self._lookups[acct.account].deals_of(order) if order else [],
        )


def _visible_symbols(terminal: Any) -> list[str]:
    symbols_get = getattr(terminal, "symbols_get", None)
    infos = symbols_get() if symbols_get is not None else None
    return [str(s.name) for s in infos or () if getattr(s, "visible", True)]


def _failure(req: OrderRequest, retcode: int, comment: str, now_ns: int) -> OrderReport:
    return OrderReport(
        client_order_id=req.client_order_id,
        tenant=req.tenant,
        account=req.account,
        retcode=retcode,
        ts_ns=now_ns,
        comment=comment,
    )
