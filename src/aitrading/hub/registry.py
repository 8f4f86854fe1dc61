"""The service registry: which service instances exist, where, which version, and how they are.

Every service instance publishes a heartbeat every `interval_s` seconds (see
`aitrading.common.service.ServiceHeartbeat`). The hub stamps each with its own clock on arrival (the
sender's clock may differ), so an instance is `stale` once `stale_after_beats` intervals pass without one.
An instance that said goodbye (`stopping`) is `stopped`. Stale and stopped instances are forgotten after
`forget_after_s`, so restarts (a new process is a new instance) do not pile up.

Status of an instance: `ready`, `not_ready` (alive, but a dependency fails), `stale`, `stopped`. Status of
a service: the best of its instances, or `missing` if an expected service never reported. The platform is
`ok` when every expected service is `ready`, else `degraded`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from aitrading.common.clock import NS_PER_S, Clock, ns_to_datetime
from aitrading.common.service import ServiceHeartbeat

__all__ = ["InstanceRecord", "Registry"]

_RANK = {"ready": 0, "not_ready": 1, "stale": 2, "stopped": 3, "missing": 4}


@dataclass(slots=True)
class InstanceRecord:
    """The last heartbeat of one service instance, and when the hub saw it."""

    beat: ServiceHeartbeat
    first_seen_ns: int
    last_seen_ns: int
    beats: int = 1


def _iso(ns: int) -> str:
    return ns_to_datetime(ns).isoformat().replace("+00:00", "Z")


class Registry:
    """Heartbeats in, registry and aggregated health out."""

    def __init__(
        self,
        clock: Clock,
        *,
        expected: Iterable[str] = (),
        stale_after_beats: int = 3,
        forget_after_s: float = 3600.0,
    ) -> None:
        if stale_after_beats < 1:
            raise ValueError("stale_after_beats must be at least 1")
        self._clock = clock
        self.expected = tuple(expected)
        self._stale_after = stale_after_beats
        self._forget_ns = int(forget_after_s * NS_PER_S)
        self._instances: dict[tuple[str, str], InstanceRecord] = {}

    def record(self, beat: ServiceHeartbeat) -> None:
        """Take a heartbeat in."""
        now = self._clock.now_ns()
        key = (beat.name, beat.instance)
        rec = self._instances.get(key)
        if rec is None:
            self._instances[key] = InstanceRecord(beat, first_seen_ns=now, last_seen_ns=now)
        else:
            rec.beat, rec.last_seen_ns, rec.beats = beat, now, rec.beats + 1

    def status_of(self, rec: InstanceRecord, now_ns: int | None = None) -> str:
        """Return `ready`, `not_ready`, `stale` or `stopped` for an instance at `now_ns` (default: now)."""
        now = self._clock.now_ns() if now_ns is None else now_ns
        if rec.beat.stopping:
            return "stopped"
        if now - rec.last_seen_ns > self._stale_after * rec.beat.interval_s * NS_PER_S:
            return "stale"
        return "ready" if rec.beat.ready else "not_ready"

    def _prune(self, now: int) -> None:
        for key, rec in list(self._instances.items()):
            if self.status_of(rec, now) in ("stale", "stopped") and now - rec.last_seen_ns > self._forget_ns:
                del self._instances[key]

    def instances(self) -> list[dict[str, Any]]:
        """Return every known instance, by service then instance, with its status and last heartbeat."""
        now = self._clock.now_ns()
        self._prune(now)
        out = []
        for (name, instance), rec in sorted(self._instances.items()):
            beat = rec.beat
            age_s = (now - rec.last_seen_ns) / NS_PER_S
            out.append(
                {
                    "name": name,
                    "instance": instance,
                    "status": self.status_of(rec, now),
                    "version": beat.version,
                    "endpoint": beat.endpoint,
                    "capabilities": list(beat.capabilities),
                    "ready": beat.ready,
                    "state": beat.state,
                    "checks": dict(beat.checks),
                    "reason": beat.reason,
                    "first_seen": _iso(rec.first_seen_ns),
                    "last_seen": _iso(rec.last_seen_ns),
                    "last_seen_age_s": round(age_s, 3),
                    "missed_beats": int(age_s // beat.interval_s),
                    "interval_s": beat.interval_s,
                    "beats": rec.beats,
                }
            )
        return out

    def health(self) -> dict[str, Any]:
        """Return the platform's aggregated health: per service the best instance, overall ok/degraded."""
        now = self._clock.now_ns()
        self._prune(now)
        per: dict[str, dict[str, Any]] = {}
        for (name, _), rec in self._instances.items():
            status = self.status_of(rec, now)
            entry = per.setdefault(name, {"status": "missing", "instances": 0, "ready_instances": 0})
            entry["instances"] += 1
            entry["ready_instances"] += status == "ready"
            if _RANK[status] < _RANK[entry["status"]]:
                entry["status"] = status
        for name in self.expected:
            per.setdefault(name, {"status": "missing", "instances": 0, "ready_instances": 0})
        # An expected service must be ready; another one (started by hand) only counts while it claims to run.
        problems = sorted(
            f"{name}: {entry['status']}"
            for name, entry in per.items()
            if entry["status"] != "ready"
            and (name in self.expected or entry["status"] in ("not_ready", "stale"))
        )
        return {
            "status": "degraded" if problems else "ok",
            "checked_at": _iso(now),
            "services": dict(sorted(per.items())),
            "problems": problems,
        }
