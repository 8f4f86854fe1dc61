"""A data bridge in its own process and fast replayed feeds, for ingest benchmarks and crash tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from aitrading.model.market import Tick

__all__ = ["BridgeProcess", "free_port", "scrape", "synthetic_feed"]

SYMBOLS = ("EURUSD", "GBPUSD", "USDJPY", "XAUUSD")
_BASE = {
    "EURUSD": 1_085_000_000,
    "GBPUSD": 1_270_000_000,
    "USDJPY": 150_000_000_000,
    "XAUUSD": 2_350_000_000_000,
}
_STEP = {"EURUSD": 10_000, "GBPUSD": 10_000, "USDJPY": 1_000_000, "XAUUSD": 10_000_000}


def scrape(base_url: str, name: str, **labels: str) -> float:
    """Sum the samples called `name` (with these label values) on `base_url`/metrics."""
    text = httpx.get(f"{base_url}/metrics", timeout=5.0).text
    total = 0.0
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                total += s.value
    return total


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def synthetic_feed(n: int, start_ms: int, per_ms: int, feed: str = "SIM", seed: int = 1) -> list[Tick]:
    """`n` ticks over the four symbols in time order, `per_ms` ticks per millisecond, distinct prices."""
    import random

    rng = random.Random(seed)
    mids = dict(_BASE)
    out: list[Tick] = []
    for i in range(n):
        sym = SYMBOLS[i % 4]
        step = _STEP[sym]
        mids[sym] += step * rng.choice((-1, 1))
        spread = step * (1 + (i % 3))
        out.append(
            Tick(
                feed=feed,
                symbol=sym,
                time_msc=start_ms + i // per_ms,
                bid=mids[sym],
                ask=mids[sym] + spread,
                flags=6,
            )
        )
    return out


@dataclass
class BridgeProcess:
    """`aitrading serve bridge` on a free port with a private data directory (SQLite, chDB, memory bus)."""

    data_dir: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    env_extra: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/agent"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AITRADING_")}
        env.update(
            AITRADING_SERVICES__BRIDGE=str(self.port),
            AITRADING_STORAGE__DATA_DIR=str(self.data_dir),
            AITRADING_LOG_LEVEL="WARNING",
            **self.env_extra,
        )
        return env

    def start(self, timeout_s: float = 60.0) -> None:
        log = (self.data_dir / "bridge.log").open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "aitrading", "serve", "bridge", "--log-level", "WARNING"],
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"bridge exited with {self.proc.returncode}; see {self.data_dir / 'bridge.log'}"
                )
            try:
                if httpx.get(f"{self.url}/health/ready", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError("bridge not ready in time")

    def kill(self) -> None:
        """SIGKILL: no flush, no goodbye — a crash."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> int:
        """SIGTERM and wait for a clean exit; return the exit code."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def metric(self, name: str, **labels: str) -> float:
        return scrape(self.url, name, **labels)

    def histogram_quantile(self, name: str, q: float) -> float:
        """Estimate a quantile from a histogram's cumulative buckets (the upper bound of its bucket)."""
        text = httpx.get(f"{self.url}/metrics", timeout=5.0).text
        buckets: list[tuple[float, float]] = []
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                if s.name == f"{name}_bucket":
                    buckets.append((float(s.labels["le"]), s.value))
        buckets.sort()
        if not buckets or buckets[-1][1] == 0:
            return float("nan")
        target = q * buckets[-1][1]
        return next(le for le, count in buckets if count >= target)
