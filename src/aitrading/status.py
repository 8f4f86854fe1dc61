"""`aitrading status`: services and readiness from the gateway, tick rates and last prices from the bridge."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

__all__ = ["BridgeSample", "PlatformStatus", "collect_status"]


@dataclass
class BridgeSample:
    """Counters and gauges read from the bridge's `/metrics` at one moment."""

    at: float
    accepted: dict[str, float] = field(default_factory=dict)
    rejected: dict[str, float] = field(default_factory=dict)
    last: dict[tuple[str, str], dict[str, float]] = field(default_factory=dict)
    connections: float = 0.0


@dataclass
class PlatformStatus:
    """What `aitrading status` shows."""

    gateway_ok: bool
    services: dict[str, dict[str, Any]]
    error: str = ""
    tick_rates: dict[str, float] = field(default_factory=dict)
    ticks_total: dict[str, float] = field(default_factory=dict)
    rejected: dict[str, float] = field(default_factory=dict)
    last_prices: dict[tuple[str, str], dict[str, float]] = field(default_factory=dict)
    agent_connections: float = 0.0


def _sample(client: httpx.Client, bridge_url: str) -> BridgeSample:
    text = client.get(f"{bridge_url}/metrics").text
    sample = BridgeSample(at=time.monotonic())
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = s.labels
            if s.name == "aitrading_bridge_ticks_accepted_total":
                sample.accepted[labels["feed"]] = s.value
            elif s.name == "aitrading_bridge_ticks_rejected_total":
                sample.rejected[labels["reason"]] = sample.rejected.get(labels["reason"], 0) + s.value
            elif s.name in ("aitrading_bridge_last_bid", "aitrading_bridge_last_ask"):
                side = "bid" if s.name.endswith("bid") else "ask"
                sample.last.setdefault((labels["feed"], labels["symbol"]), {})[side] = s.value
            elif s.name == "aitrading_bridge_agent_connections":
                sample.connections = s.value
    return sample


def collect_status(gateway_url: str, bridge_url: str, *, window_s: float = 1.0) -> PlatformStatus:
    """Read readiness from the gateway and two bridge samples `window_s` apart (for rates)."""
    with httpx.Client(timeout=3.0) as client:
        try:
            resp = client.get(f"{gateway_url}/health/ready")
            body = resp.json()
        except (httpx.HTTPError, ValueError) as exc:
            return PlatformStatus(False, {}, error=f"gateway at {gateway_url} does not answer: {exc}")
        status = PlatformStatus(resp.status_code == 200, body.get("services", {}))
        try:
            first = _sample(client, bridge_url)
            time.sleep(window_s)
            second = _sample(client, bridge_url)
        except httpx.HTTPError as exc:
            status.error = f"bridge metrics unavailable: {exc}"
            return status
    dt = max(second.at - first.at, 1e-9)
    status.ticks_total = second.accepted
    status.tick_rates = {f: (v - first.accepted.get(f, 0.0)) / dt for f, v in second.accepted.items()}
    status.rejected = second.rejected
    status.last_prices = second.last
    status.agent_connections = second.connections
    return status
