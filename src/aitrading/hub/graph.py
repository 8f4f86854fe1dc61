"""The declared dependency graph of the services and the start order that follows from it.

The graph is `aitrading.topology.SERVICE_DEPENDENCIES` and the order is `topology.start_order`: the very
function the kernel (all-in-one) and the split launcher start services with, so what the hub shows is what
runs. A cycle is reported as an error naming the cycle, not hidden behind a failure to answer.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from graphlib import CycleError, TopologicalSorter
from typing import Any

from aitrading.topology import RESOURCES, SERVICE_DEPENDENCIES, start_order

__all__ = ["dependency_graph", "find_cycle"]


def find_cycle(services: Iterable[str], deps: Mapping[str, frozenset[str]]) -> list[str] | None:
    """Return a cycle among `services` as [a, b, …, a], or None when the graph has none."""
    wanted = set(services)
    graph = {s: set(deps.get(s, frozenset())) & wanted for s in wanted}
    try:
        TopologicalSorter(graph).prepare()
    except CycleError as exc:
        # graphlib lists the cycle from a node through its dependents back to it; reversed it reads
        # "a needs b needs … needs a". It starts at its smallest name, so the answer does not vary by run.
        nodes = list(reversed(exc.args[1]))[:-1]
        first = nodes.index(min(nodes))
        ring = nodes[first:] + nodes[:first]
        return [*ring, ring[0]]
    return None


def dependency_graph(
    services: Iterable[str],
    deps: Mapping[str, frozenset[str]] = SERVICE_DEPENDENCIES,
    resources: Mapping[str, frozenset[str]] = RESOURCES,
) -> dict[str, Any]:
    """Return nodes, edges (`from` needs `to`), the start order, and for a cycle an error naming it."""
    names = list(dict.fromkeys(services))
    wanted = set(names)
    nodes = [
        {
            "service": s,
            "depends_on": sorted(deps.get(s, frozenset()) & wanted),
            "resources": sorted(resources.get(s, frozenset())),
        }
        for s in sorted(names)
    ]
    edges = [{"from": n["service"], "to": d} for n in nodes for d in n["depends_on"]]
    cycle = find_cycle(names, deps)
    if cycle is not None:
        return {
            "valid": False,
            "nodes": nodes,
            "edges": edges,
            "start_order": None,
            "error": {
                "kind": "cycle",
                "cycle": cycle,
                "message": "service dependencies form a cycle: " + " → ".join(cycle),
            },
        }
    return {
        "valid": True,
        "nodes": nodes,
        "edges": edges,
        "start_order": start_order(names, deps),
        "error": None,
    }
