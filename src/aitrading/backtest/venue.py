"""The simulated venue: what the PC agent and the simulated terminal do live, on one `SimBroker`.

It announces the account (an `AgentPresence` and an `AccountSnapshot`, as an agent does when it comes
online), takes the trading engine's `TradeCommand`s from `ord.cmd.<tenant>.<account>`, and executes each one
on the broker at the next tick, as a live command sent at a bar's close reaches the market at the next
quote. What the broker answers goes back on `ord.rpt.<tenant>.<account>` as the agent's `OrderReport`, with
the order's deals. After every execution, as the agent does, an `AccountSnapshot` follows (account state,
positions and the deals since the last snapshot): the engine takes margin and floating profit from it, as
live. Positions the broker closes by itself (SL/TP, stop-out) reach the engine through a snapshot too.

Driven two ways with the same object: `on_tick` called by the backtest driver, or `subscribe_ticks` to
take ticks from the bus like the live path (paper mode).
"""

from __future__ import annotations

from collections import deque

from aitrading.common.bus import Bus, Subscription
from aitrading.common.bus.codec import Message
from aitrading.common.clock import Clock
from aitrading.model.commands import TradeCommand
from aitrading.model.deals import Deal
from aitrading.model.ids import (
    AccountId,
    TenantId,
    account_snapshot_subject,
    agent_presence_subject,
    order_command_subject,
    order_report_subject,
    tick_subject,
)
from aitrading.model.market import Tick
from aitrading.model.wire import AccountSnapshot, AgentPresence, OrderReport
from aitrading.mt5.sim.broker import SimBroker

__all__ = ["SimVenue"]


class SimVenue:
    """Executes one account's commands on a `SimBroker`; see the module docstring."""

    def __init__(
        self, bus: Bus, broker: SimBroker, clock: Clock, *, tenant: TenantId, account: AccountId, feed: str
    ) -> None:
        self.bus, self.broker, self.clock = bus, broker, clock
        self.tenant, self.account, self.feed = tenant, account, feed
        self._pending: deque[TradeCommand] = deque()
        self._subs: list[Subscription] = []
        self._report_subject = order_report_subject(tenant, account)
        self._deals_seen = 0
        self._snapshot_deals = 0  # deals already in a snapshot
        self._snapshot_ns = 0
        self._balance = broker.balance
        self.executed = 0

    async def start(self) -> None:
        """Listen for commands; announce the account to the engine."""
        self._subs.append(
            await self.bus.subscribe(order_command_subject(self.tenant, self.account), self._on_cmd)
        )
        now = self.clock.now_ns()
        await self.bus.publish(
            agent_presence_subject(self.tenant),
            AgentPresence(
                tenant=self.tenant,
                device_id="sim-venue",
                accounts=[self.account],
                online=True,
                ts_ns=now,
                feeds={self.account: self.feed},
            ),
        )
        await self.snapshot()

    async def subscribe_ticks(self, symbols: list[str]) -> None:
        """Take ticks from the bus (the live path) instead of from a driver."""
        for symbol in symbols:
            self._subs.append(await self.bus.subscribe(tick_subject(self.feed, symbol), self._on_tick_msg))

    async def stop(self) -> None:
        """Stop listening."""
        for sub in self._subs:
            await sub.unsubscribe()
        self._subs = []

    async def _on_cmd(self, subject: str, msg: Message) -> None:
        if isinstance(msg, TradeCommand):
            self._pending.append(msg)

    async def _on_tick_msg(self, subject: str, msg: Message) -> None:
        if isinstance(msg, Tick):
            await self.on_tick(msg)

    @property
    def pending(self) -> int:
        """Commands waiting for the next tick."""
        return len(self._pending)

    async def on_tick(self, tick: Tick) -> None:
        """Move the broker to `tick`, then execute the commands that were waiting for a quote."""
        broker = self.broker
        broker.on_tick(tick)
        if self._pending:
            await self.flush()
        elif broker.balance != self._balance:  # the broker closed something by itself (SL/TP/SO)
            self._balance = broker.balance
            await self.snapshot()

    async def flush(self) -> None:
        """Execute every waiting command at the current quotes (the end of a run uses it too)."""
        while self._pending:
            cmd = self._pending.popleft()
            req = cmd.request
            now = self.clock.now_ns()
            answer = self.broker.order_send(req, now)
            deals = self._new_deals()
            self.executed += 1
            report = OrderReport(
                client_order_id=req.client_order_id,
                tenant=req.tenant,
                account=req.account,
                retcode=answer.retcode,
                ts_ns=now,
                order=answer.order,
                deal=answer.deal,
                volume=answer.volume,
                price=answer.price,
                bid=answer.bid,
                ask=answer.ask,
                comment=answer.comment,
                deals=[d for d in deals if d.order == answer.order] if answer.order else [],
            )
            await self.bus.publish(self._report_subject, report)
        self._balance = self.broker.balance
        await self.snapshot()

    def _new_deals(self) -> list[Deal]:
        new = self.broker.deals_since(self._deals_seen)
        self._deals_seen += len(new)
        return new

    async def snapshot(self) -> None:
        """Send the terminal's view of the account (reconciliation)."""
        broker = self.broker
        now = self.clock.now_ns()
        deals = broker.deals_since(self._snapshot_deals)
        self._snapshot_deals += len(deals)
        since, self._snapshot_ns = self._snapshot_ns, now
        await self.bus.publish(
            account_snapshot_subject(self.tenant, self.account),
            AccountSnapshot(
                tenant=self.tenant,
                account=self.account,
                ts_ns=now,
                account_state=broker.state,
                positions=list(broker.positions),
                orders=[],
                deals_from_ns=since,
                deals=deals,
            ),
        )
