"""The agent ↔ data-bridge protocol over WebSocket (binary msgpack frames).

The agent authenticates on the upgrade request (`X-Device-Id` and `Authorization: Bearer <device key>`),
then sends `AgentHello`. The bridge answers `BridgeWelcome` with the last durable sequence number it has
per source, so the agent drops what is already stored and resends the rest. Each `TickBatchFrame` carries
a per-source sequence number; the bridge answers `BatchAck` only once that batch is durable, and acks
(without storing again) a batch it has already stored. See docs/adr/0003-agent-protocol.md.
"""

from __future__ import annotations

import msgspec

from aitrading.common.bus.codec import Message
from aitrading.model.market import Tick

__all__ = ["AgentHello", "BatchAck", "BridgeError", "BridgeWelcome", "TickBatchFrame"]

PROTOCOL_VERSION = 1


class AgentHello(Message, frozen=True):
    """First frame from the agent: who it is and which sources it will stream."""

    device_id: str
    agent_version: str
    sources: list[str]
    protocol: int = PROTOCOL_VERSION
    symbols: dict[str, dict[str, int]] = msgspec.field(default_factory=dict)
    """Per feed, the symbols the agent streams and their digits (from the terminal's `symbol_info`)."""


class BridgeWelcome(Message, frozen=True):
    """The bridge's answer to `AgentHello`: its limits and the last durable sequence per source."""

    session: str
    durable: dict[str, int]
    max_batch_ticks: int
    max_frame_bytes: int
    protocol: int = PROTOCOL_VERSION


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
