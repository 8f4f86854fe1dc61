"""`aitrading up --split`: one process per service against PostgreSQL, Redis and NATS.

Services start in dependency order (`topology.start_order` over `SERVICE_DEPENDENCIES`, the graph the
hub serves at `/api/v1/graph`), each awaited until its `/health/ready` answers 200 before the next starts.
With `security.tls.enabled` the readiness polls use HTTPS and verify the services against the local CA
(presenting the `launcher` client certificate under mTLS). Migrations run once, before any service.
SIGINT/SIGTERM stop the children in reverse order.
"""

from __future__ import annotations

import asyncio
import os
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Protocol

import httpx

from aitrading.common.config import PlatformConfig
from aitrading.common.errors import ConfigError, OperationalError
from aitrading.common.tls import httpx_verify, service_url
from aitrading.topology import start_order

__all__ = ["SPLIT_DEFAULTS", "run_split", "split_environment", "split_start_order", "wait_ready"]

SPLIT_DEFAULTS = {
    "AITRADING_BUS__KIND": "nats",
    "AITRADING_STORAGE__CACHE": "redis",
    "AITRADING_STORAGE__OLTP_URL": "postgresql+asyncpg://postgres@127.0.0.1:5432/aitrading",
}


def split_environment(cfg: PlatformConfig) -> dict[str, str]:
    """Return the environment for child processes: the split profile unless the config already says."""
    env = dict(os.environ)
    if cfg.bus.kind == "memory":
        env["AITRADING_BUS__KIND"] = SPLIT_DEFAULTS["AITRADING_BUS__KIND"]
    if cfg.storage.cache == "memory":
        env["AITRADING_STORAGE__CACHE"] = SPLIT_DEFAULTS["AITRADING_STORAGE__CACHE"]
    if not cfg.storage.oltp_url or cfg.storage.oltp_url.startswith("sqlite"):
        env["AITRADING_STORAGE__OLTP_URL"] = SPLIT_DEFAULTS["AITRADING_STORAGE__OLTP_URL"]
    env.setdefault("AITRADING_LOG_LEVEL", "INFO")
    return env


async def _prepare_database(cfg: PlatformConfig, url: str) -> None:
    """Create (development) and migrate the database at `url` as its owner, and the services' app role."""
    from aitrading.storage.oltp import Database, ensure_database

    if cfg.mode == "development":
        await ensure_database(url)
    storage = cfg.storage.model_copy(update={"oltp_url": url})
    # Migrate first (as the owner; it creates the app role), then connect as the app role once to prove it.
    db = Database.from_config(cfg.model_copy(update={"storage": storage}), migrate_on_start=True)
    await db.start()
    await db.stop()


class _Process(Protocol):
    """What `wait_ready` needs of a child process (a `subprocess.Popen`)."""

    @property
    def returncode(self) -> int | None: ...

    def poll(self) -> int | None: ...


def wait_ready(
    url: str, proc: _Process, name: str, timeout_s: float, *, verify: ssl.SSLContext | bool = True
) -> None:
    """Poll `url/health/ready` until it answers 200; raise `OperationalError` if `proc` ends or time is up."""
    deadline = time.monotonic() + timeout_s
    with httpx.Client(timeout=1.0, verify=verify) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise OperationalError(f"service {name} exited with code {proc.returncode} during start")
            try:
                if client.get(f"{url}/health/ready").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
    raise OperationalError(f"service {name} was not ready within {timeout_s:.0f} s ({url}/health/ready)")


def split_start_order(cfg: PlatformConfig) -> list[str]:
    """Return the order in which `run_split` starts the enabled services (dependencies first)."""
    return start_order(cfg.services.enabled)


def run_split(cfg: PlatformConfig, *, simulate: bool, on_ready: Callable[[list[str]], None]) -> None:
    """Start every enabled service as its own process and supervise them until a signal."""
    env = split_environment(cfg)
    oltp_url = env.get("AITRADING_STORAGE__OLTP_URL", cfg.storage.resolved_oltp_url())
    if oltp_url.startswith("sqlite"):
        raise ConfigError(
            "split mode needs PostgreSQL: set AITRADING_STORAGE__OLTP_URL to a postgresql+asyncpg URL"
        )
    asyncio.run(_prepare_database(cfg, oltp_url))
    logs = cfg.storage.data_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    procs: list[tuple[str, subprocess.Popen[bytes], IO[bytes]]] = []
    stop = {"now": False}

    def _signal(_sig: int, _frame: object) -> None:
        stop["now"] = True

    old = {s: signal.signal(s, _signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        order = split_start_order(cfg)
        verify = httpx_verify(cfg, "launcher")
        for name in order:
            procs.append(_spawn(name, ["serve", name, "--split", "--no-migrate"], env, logs))
            wait_ready(
                service_url(cfg, name), procs[-1][1], name, cfg.services.ready_timeout_s, verify=verify
            )
            if stop["now"]:
                return
        if simulate:
            procs.append(_spawn("agent", ["agent", "run", "--terminal", "sim", "--dev-key"], env, logs))
        on_ready(order)
        while not stop["now"]:
            for name, proc, _ in procs:
                if proc.poll() is not None:
                    raise OperationalError(
                        f"{name} exited with code {proc.returncode}; see {logs / name}.log"
                    )
            time.sleep(0.2)
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
        _terminate(procs)


def _spawn(
    name: str, args: list[str], env: dict[str, str], logs: Path
) -> tuple[str, subprocess.Popen[bytes], IO[bytes]]:
    log = (logs / f"{name}.log").open("ab")
    proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module, no shell
        [sys.executable, "-m", "aitrading", *args], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    return name, proc, log


def _terminate(procs: list[tuple[str, subprocess.Popen[bytes], IO[bytes]]]) -> None:
    for _, proc, _ in reversed(procs):
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for _, proc, log in reversed(procs):
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
