"""Which service needs which resources and which other services, and the resulting start order."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from graphlib import CycleError, TopologicalSorter

from aitrading.common.config import SERVICE_NAMES
from aitrading.common.errors import ConfigError

__all__ = ["RESOURCES", "SERVICE_DEPENDENCIES", "start_order"]

RESOURCES: Mapping[str, frozenset[str]] = {
    "gateway": frozenset({"bus", "db", "cache"}),
    "hub": frozenset({"bus"}),
    "bridge": frozenset({"bus", "db", "ticks", "cache"}),
    "engine": frozenset({"bus", "db"}),
    "dbservice": frozenset({"bus", "db", "ticks"}),
    "features": frozenset({"bus", "cache"}),
    "config": frozenset({"bus", "db"}),
    "ml": frozenset({"bus", "db"}),
    "decision": frozenset({"bus"}),
    "notify": frozenset({"bus"}),
    "lstm": frozenset({"bus"}),
}
"""The shared resources a service uses in its process.

Every service has the bus: it publishes its heartbeats and error events to the central hub there."""

SERVICE_DEPENDENCIES: Mapping[str, frozenset[str]] = {
    "hub": frozenset(),
    "dbservice": frozenset({"hub"}),
    "config": frozenset({"hub", "dbservice"}),
    "bridge": frozenset({"hub", "dbservice"}),
    "features": frozenset({"bridge"}),
    "ml": frozenset({"dbservice"}),
    "decision": frozenset({"features", "ml", "engine"}),
    "engine": frozenset({"dbservice", "config"}),
    "notify": frozenset({"engine"}),
    "lstm": frozenset({"hub"}),
    "gateway": frozenset(SERVICE_NAMES) - {"gateway"},
}
"""The services that must be ready before a service starts."""


def start_order(
    services: Iterable[str], deps: Mapping[str, frozenset[str]] = SERVICE_DEPENDENCIES
) -> list[str]:
    """Return `services` in an order where each comes after the dependencies among them.

    Raises `ConfigError` naming the cycle if the dependency graph has one.
    """
    wanted = set(services)
    graph = {s: set(deps.get(s, frozenset())) & wanted for s in wanted}
    try:
        return list(TopologicalSorter(graph).static_order())
    except CycleError as exc:
        cycle = " → ".join(exc.args[1])
        raise ConfigError(f"service dependencies form a cycle: {cycle}") from None
