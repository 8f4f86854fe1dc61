"""Launch the real `aitrading` CLI in a subprocess on free ports and a private data directory."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from aitrading.common.config import SERVICE_NAMES
from aitrading.testing.rig import scrape


def free_ports(n: int) -> list[int]:
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def platform_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """Environment for an isolated platform: every service (and the agent status API) on a free port."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AITRADING_")}
    ports = free_ports(len(SERVICE_NAMES) + 1)
    for name, port in zip(SERVICE_NAMES, ports, strict=False):
        env[f"AITRADING_SERVICES__{name.upper()}"] = str(port)
    env["AITRADING_AGENT__STATUS_PORT"] = str(ports[-1])
    env["AITRADING_STORAGE__DATA_DIR"] = str(data_dir)
    env.update(extra)
    return env


def run_cli(
    args: list[str], env: dict[str, str], cwd: Path, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aitrading", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def url(env: dict[str, str], service: str) -> str:
    return f"http://127.0.0.1:{env[f'AITRADING_SERVICES__{service.upper()}']}"


def wait_ready(base: str, proc: subprocess.Popen[str], timeout_s: float = 60) -> dict[str, object]:
    deadline = time.monotonic() + timeout_s
    last = None
    with httpx.Client(timeout=2.0) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                _, err = proc.communicate()
                raise AssertionError(f"platform exited {proc.returncode}: {err[-2000:]}")
            try:
                resp = client.get(f"{base}/health/ready")
                last = resp.json()
                if resp.status_code == 200:
                    return last  # type: ignore[no-any-return]
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
    raise AssertionError(f"not ready within {timeout_s}s; last answer {last}")


def metric(base: str, name: str, **labels: str) -> float:
    return scrape(base, name, **labels)


@contextmanager
def running(args: list[str], env: dict[str, str], cwd: Path) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "aitrading", *args],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


def app_role_for(database_url: str) -> str:
    """The app role a platform on a `fresh_postgres_db` database logs in as; dropped with that database."""
    return database_url.rsplit("/", 1)[1] + "_app"
