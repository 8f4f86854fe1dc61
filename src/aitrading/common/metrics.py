"""Prometheus metrics: one registry per process, names prefixed `aitrading_`.

Components create their metrics here so `/metrics` of every service exposes them.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "REGISTRY", "counter", "gauge", "histogram", "render"]

REGISTRY = CollectorRegistry(auto_describe=True)
_made: dict[str, Counter | Gauge | Histogram] = {}


def counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
    """Return the process-wide counter `aitrading_<name>_total`, creating it once."""
    full = f"aitrading_{name}"
    made = _made.get(full)
    if made is None:
        made = Counter(full, doc, labels, registry=REGISTRY)
        _made[full] = made
    assert isinstance(made, Counter), f"{full} is not a counter"
    return made


def gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
    """Return the process-wide gauge `aitrading_<name>`, creating it once."""
    full = f"aitrading_{name}"
    made = _made.get(full)
    if made is None:
        made = Gauge(full, doc, labels, registry=REGISTRY)
        _made[full] = made
    assert isinstance(made, Gauge), f"{full} is not a gauge"
    return made


def histogram(
    name: str, doc: str, labels: tuple[str, ...] = (), buckets: tuple[float, ...] | None = None
) -> Histogram:
    """Return the process-wide histogram `aitrading_<name>`, creating it once."""
    full = f"aitrading_{name}"
    made = _made.get(full)
    if made is None:
        if buckets is None:
            made = Histogram(full, doc, labels, registry=REGISTRY)
        else:
            made = Histogram(full, doc, labels, registry=REGISTRY, buckets=buckets)
        _made[full] = made
    assert isinstance(made, Histogram), f"{full} is not a histogram"
    return made


def render() -> bytes:
    """Return the Prometheus text exposition of every metric in this process."""
    return generate_latest(REGISTRY)
