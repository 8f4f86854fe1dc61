"""The agent ↔ data-bridge protocol over WebSocket (binary msgpack frames).

The agent authenticates on the upgrade request (`X-Device-Id` and `Authorization: Bearer <device key>`),
then sends `AgentHello`. The bridge answers `BridgeWelcome` with the last durable sequence number it has
per source, so the agent drops what is already stored and resends the rest. Each `TickBatchFrame` carries
a per-source sequence number; the bridge answers `BatchAck` only once that batch is durable, and acks
(without storing again) a batch it has already stored. See docs/adr/0003-agent-protocol.md.

Order execution rides the same connection (docs/adr/0009-execution-through-agents.md). `AgentHello.accounts`
names the trading accounts the agent executes for; the bridge forwards each `TradeCommand` published on
`ord.cmd.<tenant>.<account>` to the agent of that account, and the agent answers an `OrderReport` (what
`order_send` answered, or what it found in the terminal's history when the command had already been sent
before a crash) and, from time to time and after every execution, an `AccountSnapshot` (account, open
positions, pending orders, recent deals) that the engine reconciles against its own books.

Symbol specs come from the terminals too: after connecting, and whenever the engine asks with a
`SpecsRequest` on `acct.specs.ask.<tenant>.<account>` (forwarded like commands), the agent sends
`SymbolSpecs` with its terminal's `symbol_info` of the symbols the account trades; the bridge publishes them
on `acct.specs.<tenant>.<account>` (`symbol_specs_subject`) and the engine prices and checks that account's
orders with them.
"""

from __future__ import annotations

import msgspec

from aitrading.common.bus.codec import Message
from aitrading.model.accounts import AccountState
from aitrading.model.deals import Deal
from aitrading.model.ids import AccountId, ClientOrderId, TenantId
from aitrading.model.market import Tick
from aitrading.model.positions import Position
from aitrading.model.symbols import SymbolSpec

__all__ = [
    "AccountSnapshot",
    "AgentHello",
    "AgentPresence",
    "BatchAck",
    "BridgeError",
    "BridgeWelcome",
    "OrderReport",
    "PendingOrder",
    "ReportAck",
    "SpecsRequest",
    "SymbolSpecs",
    "TickBatchFrame",
    "specs_request_subject",
    "symbol_specs_subject",
]

PROTOCOL_VERSION = 1


class AgentHello(Message, frozen=True):
    """First frame from the agent: who it is and which sources it will stream."""

    device_id: str
    agent_version: str
    sources: list[str]
    protocol: int = PROTOCOL_VERSION
    symbols: dict[str, dict[str, int]] = msgspec.field(default_factory=dict)
    """Per feed, the symbols the agent streams and their digits (from the terminal's `symbol_info`)."""
    accounts: dict[str, str] = msgspec.field(default_factory=dict)
    """Trading accounts the agent executes for: account id → the feed (broker server) of its terminal."""


class BridgeWelcome(Message, frozen=True):
    """The bridge's answer to `AgentHello`: its limits and the last durable sequence per source."""

    session: str
    durable: dict[str, int]
    max_batch_ticks: int
    max_frame_bytes: int
    protocol: int = PROTOCOL_VERSION
    tenant: str = ""
    """The tenant the device belongs to: the agent's reports and snapshots must name it."""


class TickBatchFrame(Message, frozen=True):
    """A batch of ticks from one source (`<device>/<feed>`) with its sequence number (1, 2, 3, …)."""

    src: str
    seq: int
    feed: str
    ticks: list[Tick]


class BatchAck(Message, frozen=True):
    """Batch `seq` of `src` is durable: `accepted` ticks stored, `rejected` refused (counted by reason)."""

    src: str
    seq: int
    accepted: int
    rejected: int
    duplicate: bool = False


class BridgeError(Message, frozen=True):
    """A protocol error; the bridge closes the connection after sending it."""

    code: str
    reason: str


class OrderReport(Message, frozen=True):
    """What happened to one `TradeCommand` at the terminal (agent → bridge → `ord.rpt.<tenant>.<account>`).

    `retcode`, `order`, `deal`, `volume` (raw 1e-8), `price`, `bid`, `ask` (raw 1e-9) and `comment` are
    `order_send`'s answer. `recovered` is True when the agent did not send the request now but found the
    order it had sent before (a crash between `order_send` and this report) in the terminal's orders or
    history, by its client order id in `comment`. `deals` are the terminal's deals of that order known
    when reporting. `ts_ns` is when the agent made the report (its clock).
    """

    client_order_id: ClientOrderId
    tenant: TenantId
    account: AccountId
    retcode: int
    ts_ns: int
    order: int = 0
    deal: int = 0
    volume: int = 0
    price: int = 0
    bid: int = 0
    ask: int = 0
    comment: str = ""
    retcode_external: int = 0
    recovered: bool = False
    deals: list[Deal] = msgspec.field(default_factory=list)


class PendingOrder(msgspec.Struct, frozen=True, kw_only=True):
    """A pending order as the terminal lists it (`orders_get`): raw prices and volumes, UTC epoch ns."""

    ticket: int
    symbol: str
    type: int
    volume_initial: int
    volume_current: int
    price_open: int
    stoplimit: int = 0
    sl: int = 0
    tp: int = 0
    time_setup_ns: int = 0
    time_expiration_ns: int = 0
    type_time: int = 0
    type_filling: int = 0
    magic: int = 0
    comment: str = ""
    position_id: int = 0


class AccountSnapshot(Message, frozen=True):
    """The terminal's view of one account: the truth the engine reconciles against.

    `deals` are the account's deals with `time_ns >= deals_from_ns` (the agent sends a window; the engine
    keeps what it has not booked yet).
    """

    tenant: TenantId
    account: AccountId
    ts_ns: int
    account_state: AccountState
    positions: list[Position]
    orders: list[PendingOrder]
    deals_from_ns: int
    deals: list[Deal]


class ReportAck(Message, frozen=True):
    """Bridge → agent: the report of `client_order_id` is on the bus; the agent may forget it."""

    client_order_id: str


class AgentPresence(Message, frozen=True):
    """Bridge → bus (`agent.presence.<tenant>`): the accounts of an agent came online or went offline."""

    tenant: TenantId
    device_id: str
    accounts: list[str]
    online: bool
    ts_ns: int
    feeds: dict[str, str] = msgspec.field(default_factory=dict)
    """Account id → the feed (broker server) of its terminal, as the agent declared in `AgentHello`."""


class SymbolSpecs(Message, frozen=True):
    """Agent → bridge → bus (`acct.specs.<tenant>.<account>`): the account's terminal's symbol specs.

    `specs` are the terminal's `symbol_info` (contract size, digits, volume limits and step, stops and
    freeze levels, currencies, swaps) of the symbols the account trades; `ts_ns` is when the agent read them.
    """

    tenant: TenantId
    account: AccountId
    ts_ns: int
    specs: list[SymbolSpec]


class SpecsRequest(Message, frozen=True):
    """Engine → `acct.specs.ask.<tenant>.<account>` → bridge → agent: send the account's `SymbolSpecs` again.

    `symbols` names what to send; empty means every symbol the account trades.
    """

    tenant: TenantId
    account: AccountId
    symbols: list[str] = msgspec.field(default_factory=list)


def symbol_specs_subject(tenant: str, account: str) -> str:
    """Return the subject an account's `SymbolSpecs` are published on."""
    return f"acct.specs.{tenant}.{account}"


def specs_request_subject(tenant: str, account: str) -> str:
    """Return the subject on which the engine asks an account's agent for its `SymbolSpecs`."""
    return f"acct.specs.ask.{tenant}.{account}"
