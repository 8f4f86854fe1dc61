"""Seconds from launching `aitrading up` to a ready gateway (`/health/ready` 200), and to clean exit.

Run: `aitrading bench startup [--runs N]`. Goal: ≤ 3 s all-in-one (the original plan asked < 6 s).
Each run uses a fresh data directory, so migrations and storage creation are included.
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time

import httpx
from rich.console import Console
from rich.table import Table

GATEWAY = "http://127.0.0.1:8000/health/ready"


def one_run(timeout_s: float = 60.0) -> tuple[float, float, int]:
    """Launch, wait for readiness, stop; return (seconds to ready, seconds to exit, exit code)."""
    with tempfile.TemporaryDirectory(prefix="aitrading-bench-") as data:
        env = dict(
            os.environ,
            AITRADING_STORAGE__DATA_DIR=data,
            AITRADING_AGENT__BUFFER_PATH=f"{data}/agent-buffer.sqlite",
        )
        started = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "aitrading", "up"],
            env=env,
            cwd=data,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        ready_at = None
        with httpx.Client(timeout=0.5) as client:
            while time.perf_counter() - started < timeout_s and proc.poll() is None:
                try:
                    if client.get(GATEWAY).status_code == 200:
                        ready_at = time.perf_counter() - started
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.02)
        if ready_at is None:
            proc.kill()
            _, err = proc.communicate()
            raise RuntimeError(f"not ready within {timeout_s} s: {err.decode()[-800:]}")
        stop = time.perf_counter()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        return ready_at, time.perf_counter() - stop, proc.returncode


def main(runs: int = 3) -> None:
    console = Console()
    with httpx.Client(timeout=0.5) as client:
        try:
            client.get(GATEWAY)
            console.print("[red]a platform already answers on port 8000; stop it first[/]")
            return
        except httpx.HTTPError:
            pass
    results = []
    for i in range(runs):
        ready, exit_s, code = one_run()
        results.append((ready, exit_s, code))
        console.print(f"run {i + 1}: ready in {ready:.2f} s, stopped in {exit_s:.2f} s (exit {code})")
    table = Table(title="aitrading up (all-in-one) start-up")
    for col in ("runs", "ready median s", "ready max s", "goal s", "stop median s"):
        table.add_column(col)
    readies = [r[0] for r in results]
    table.add_row(
        str(runs),
        f"{statistics.median(readies):.2f}",
        f"{max(readies):.2f}",
        "3.0",
        f"{statistics.median(r[1] for r in results):.2f}",
    )
    console.print(table)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
