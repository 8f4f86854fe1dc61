"""Execution through agents, the bridge's side: which connection serves which trading account.

An agent declares in its hello the accounts it executes for. For each, while it is connected, the bridge
subscribes `ord.cmd.<tenant>.<account>` and forwards every `TradeCommand` whose own tenant and account
match to that agent's WebSocket; it publishes the agent's `OrderReport`s on `ord.rpt.<tenant>.<account>`
(answering `ReportAck` once the bus took it), its `AccountSnapshot`s on `acct.snap.<tenant>.<account>` and
its `SymbolSpecs` on `acct.specs.<tenant>.<account>` (forwarding the engine's `SpecsRequest` the other way);
and it announces `AgentPresence` on `agent.presence.<tenant>` when the accounts come online and go
offline, so the engine knows when to resend the commands it has not heard back about.

One account has one agent. A connection of another device declaring an account already served is
refused (`AccountConflict`, close code 4409); a new connection of the same device takes the account over
and the old connection is closed (a reconnecting agent whose old socket the bridge has not yet seen die).
The tenant is the authenticated device's, never what a frame says: a report or snapshot naming a tenant
or account its connection did not declare is rejected and counted, never published.
See docs/adr/0009-execution-through-agents.md.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

import structlog

from aitrading.common import metrics
from aitrading.common.bus import Bus, Message, Subscription, encode
from aitrading.common.clock import Clock
from aitrading.common.errors import BadInputError
from aitrading.model.commands import TradeCommand
from aitrading.model.ids import (
    TenantId,
    account_id,
    account_snapshot_subject,
    agent_presence_subject,
    order_command_subject,
    order_report_subject,
    tenant_id,
)
from aitrading.model.wire import (
    AccountSnapshot,
    AgentPresence,
    OrderReport,
    ReportAck,
    SpecsRequest,
    SymbolSpecs,
    specs_request_subject,
    symbol_specs_subject,
)

__all__ = ["CONFLICT_CLOSE_CODE", "AccountConflict", "AgentLink", "OrderRouter"]

CONFLICT_CLOSE_CODE = 4409
"""Close code for an account served by another connection (refused) or taken over (superseded)."""

_log = structlog.get_logger("bridge.orders")

REJECTED = metrics.counter(
    "bridge_agent_frames_rejected",
    "Order frames refused: reports/snapshots of undeclared accounts, commands not matching their subject",
    ("kind", "reason"),
)
FORWARDED = metrics.counter("bridge_commands_forwarded", "Trade commands forwarded to agents")
UNDELIVERED = metrics.counter(
    "bridge_commands_undelivered", "Trade commands whose agent connection failed while forwarding"
)
REPORTS = metrics.counter("bridge_order_reports", "Order reports published on ord.rpt")
SNAPSHOTS = metrics.counter("bridge_account_snapshots", "Account snapshots published on acct.snap")
ONLINE = metrics.gauge("bridge_agent_accounts_online", "Trading accounts with a connected agent")

SendBytes = Callable[[bytes], Awaitable[None]]
"""Send one binary frame on the link's WebSocket."""
CloseLink = Callable[[int, str, str], Awaitable[None]]
"""Close the link's WebSocket with (close code, error kind, reason)."""


class AccountConflict(BadInputError):
    """An account the hello declares is served by another device's connection."""


@dataclass(eq=False)
class AgentLink:
    """The trading side of one agent connection."""

    tenant: TenantId
    device_id: str
    accounts: dict[str, str]
    """Declared accounts → their feeds."""
    send: SendBytes
    close: CloseLink
    owned: set[str] = field(default_factory=set)
    """Accounts this connection serves now (a newer connection of the device may take them over)."""
    subscriptions: list[Subscription] = field(default_factory=list)
    superseded: list[AgentLink] = field(default_factory=list)
    opened: bool = False
    rejected: int = 0

    def serves(self, tenant: str, account: str) -> bool:
        """Tell whether this connection serves `account` of `tenant`."""
        return tenant == self.tenant and account in self.owned


class OrderRouter:
    """Routes trade commands to the connected agent of each account, and its reports back to the bus."""

    def __init__(self, bus: Bus, clock: Clock) -> None:
        self._bus = bus
        self._clock = clock
        self._owners: dict[tuple[str, str], AgentLink] = {}

    def claim(
        self, tenant: str, device_id: str, accounts: Mapping[str, str], send: SendBytes, close: CloseLink
    ) -> AgentLink:
        """Reserve `accounts` for a new connection of `device_id`; raise `AccountConflict` or `BadInputError`.

        Synchronous, so two connections racing for an account cannot both win.
        """
        try:
            tenant_ok = tenant_id(tenant)
        except ValueError:
            raise BadInputError(f"the device's tenant id {tenant!r} cannot scope order subjects") from None
        for account in accounts:
            try:
                account_id(account)
            except ValueError as exc:
                raise BadInputError(str(exc)) from None
            owner = self._owners.get((tenant, account))
            if owner is not None and owner.device_id != device_id:
                raise AccountConflict(
                    f"account {account} is already served by device {owner.device_id}; one agent per account"
                )
        link = AgentLink(tenant_ok, device_id, dict(accounts), send, close)
        for account in accounts:
            old = self._owners.get((tenant, account))
            if old is not None:
                old.owned.discard(account)
                if old not in link.superseded:
                    link.superseded.append(old)
            self._owners[(tenant, account)] = link
            link.owned.add(account)
        return link

    async def open(self, link: AgentLink) -> None:
        """Start forwarding the link's commands, close what it superseded, announce its accounts online."""
        for old in link.superseded:
            _log.warning("agent_connection_superseded", device=link.device_id, accounts=sorted(link.owned))
            await old.close(
                CONFLICT_CLOSE_CODE, "superseded", f"a newer connection of device {old.device_id} took over"
            )
        link.superseded.clear()
        for account in sorted(link.owned):
            subject = order_command_subject(link.tenant, account)
            link.subscriptions.append(await self._bus.subscribe(subject, self._forwarder(link, account)))
            ask = specs_request_subject(link.tenant, account)
            link.subscriptions.append(await self._bus.subscribe(ask, self._forwarder(link, account)))
        link.opened = True
        ONLINE.set(len(self._owners))
        await self._presence(link, sorted(link.owned), online=True)

    async def release(self, link: AgentLink) -> None:
        """Stop forwarding the link's commands and announce the accounts it still served offline."""
        for sub in link.subscriptions:
            await sub.unsubscribe()
        link.subscriptions.clear()
        gone = sorted(a for a in link.owned if self._owners.get((link.tenant, a)) is link)
        for account in gone:
            del self._owners[(link.tenant, account)]
        ONLINE.set(len(self._owners))
        link.owned.clear()
        if link.opened:
            await self._presence(link, gone, online=False)

    async def report(self, link: AgentLink, report: OrderReport) -> bool:
        """Publish `report` on `ord.rpt` and acknowledge it to the agent; return False if it was refused."""
        if not self._check(link, "report", report.tenant, report.account):
            return False
        await self._bus.publish(order_report_subject(report.tenant, report.account), report)
        REPORTS.inc()
        await link.send(encode(ReportAck(client_order_id=report.client_order_id)))
        return True

    async def snapshot(self, link: AgentLink, snap: AccountSnapshot) -> bool:
        """Publish `snap` on `acct.snap`; return False if it was refused."""
        if not self._check(link, "snapshot", snap.tenant, snap.account):
            return False
        await self._bus.publish(account_snapshot_subject(snap.tenant, snap.account), snap)
        SNAPSHOTS.inc()
        return True

    async def specs(self, link: AgentLink, msg: SymbolSpecs) -> bool:
        """Publish the terminal's symbol specs on `acct.specs`; return False if they were refused."""
        if not self._check(link, "specs", msg.tenant, msg.account):
            return False
        await self._bus.publish(symbol_specs_subject(msg.tenant, msg.account), msg)
        return True

    def owner(self, tenant: str, account: str) -> AgentLink | None:
        """Return the connection serving `account` of `tenant`, if any."""
        return self._owners.get((tenant, account))

    # -- internals ---------------------------------------------------------------------------------

    def _check(self, link: AgentLink | None, kind: str, tenant: str, account: str) -> bool:
        if link is not None and link.serves(tenant, account):
            return True
        if link is None:
            reason = "no_accounts"
        else:
            reason = "foreign_tenant" if tenant != link.tenant else "foreign_account"
        REJECTED.labels(kind, reason).inc()
        if link is not None:
            link.rejected += 1
        _log.warning("agent_frame_rejected", kind=kind, reason=reason, tenant=tenant, account=account)
        return False

    def reject(self, kind: str, tenant: str, account: str) -> None:
        """Count a report or snapshot from a connection that declared no accounts."""
        self._check(None, kind, tenant, account)

    def _forwarder(self, link: AgentLink, account: str) -> Callable[[str, Message], Awaitable[None]]:
        async def forward(subject: str, msg: Message) -> None:
            if (
                not isinstance(msg, TradeCommand | SpecsRequest)
                or msg.tenant != link.tenant
                or msg.account != account
            ):
                REJECTED.labels("command", "subject_mismatch").inc()
                _log.warning("command_rejected", subject=subject, type=type(msg).__name__)
                return
            if account not in link.owned:
                return  # taken over by a newer connection, which has its own subscription
            try:
                await link.send(encode(msg))
            except Exception as exc:  # the socket died under us: the engine resends on presence
                UNDELIVERED.inc()
                what = msg.request.client_order_id if isinstance(msg, TradeCommand) else "symbol specs"
                _log.warning("command_undelivered", client_order_id=what, error=repr(exc))
                return
            FORWARDED.inc()

        return forward

    async def _presence(self, link: AgentLink, accounts: list[str], *, online: bool) -> None:
        if not accounts:
            return
        msg = AgentPresence(
            tenant=link.tenant,
            device_id=link.device_id,
            accounts=accounts,
            online=online,
            ts_ns=self._clock.now_ns(),
            feeds={a: link.accounts[a] for a in accounts if a in link.accounts},
        )
        await self._bus.publish(agent_presence_subject(link.tenant), msg)
