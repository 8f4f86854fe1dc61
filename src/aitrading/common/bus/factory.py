"""Build the configured bus implementation; NATS is imported only when asked for."""

from __future__ import annotations

from aitrading.common.bus.base import Bus
from aitrading.common.bus.memory import MemoryBus
from aitrading.common.errors import ConfigError

__all__ = ["BUS_KINDS", "make_bus"]

BUS_KINDS = ("memory", "nats")


def make_bus(kind: str, *, nats_url: str = "nats://127.0.0.1:4222", stream_prefix: str = "") -> Bus:
    """Return an unconnected bus of `kind` (`memory` or `nats`); the caller awaits `connect()`."""
    if kind == "memory":
        return MemoryBus()
    if kind == "nats":
        from aitrading.common.bus.nats import NatsBus

        return NatsBus(nats_url, stream_prefix=stream_prefix)
    raise ConfigError(f"unknown bus kind {kind!r}: choose one of {', '.join(BUS_KINDS)}")
