"""`aitrading agent run` as a process: streams simulated terminals to a bridge, stops cleanly on a signal."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from agent_fakes import FakeBridge, eventually
from typer.testing import CliRunner

from aitrading.agent.cli import app
from aitrading.common.config import PlatformConfig

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="sends POSIX signals to the agent process")

RUN_AGENT = "from aitrading.agent.cli import app; app()"


@pytest.fixture
async def bridge() -> AsyncIterator[FakeBridge]:
    dev = PlatformConfig()
    server = await FakeBridge(dev.agent.device_id, dev.security.dev_device_key.get_secret_value()).start()
    yield server
    await server.stop()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def start_agent(tmp_path: Path, *args: str, port: int) -> asyncio.subprocess.Process:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AITRADING_")}
    env |= {
        "AITRADING_STORAGE__DATA_DIR": str(tmp_path / "var"),
        "AITRADING_AGENT__STATUS_PORT": str(port),
        "AITRADING_SIMULATOR__RATE_FACTOR": "50",
    }
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        RUN_AGENT,
        "run",
        *args,
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
async def test_run_streams_two_simulated_terminals_and_stops_cleanly_on_a_signal(
    tmp_path: Path, bridge: FakeBridge, sig: signal.Signals
) -> None:
    port = free_port()
    store = ["--store", "file", "--file", str(tmp_path / "none.bin")]  # nothing stored: development key
    proc = await start_agent(
        tmp_path, "-t", "sim", "-t", "sim:PAPER", "--symbols", "EURUSD,GBPUSD", "--bridge-url", bridge.url,
        *store, "--log-level", "WARNING", port=port,
    )  # fmt: skip
    try:
        await eventually(
            lambda: bridge.durable("dev-device/SIM") > 0 and bridge.durable("dev-device/PAPER") > 0,
            timeout=30,
            what="ticks of both feeds at the bridge",
        )
        status = await asyncio.to_thread(
            CliRunner().invoke, app, ["status", "--url", f"http://127.0.0.1:{port}"]
        )
        assert status.exit_code == 0, status.output
        assert "connected" in status.stdout
        assert "dev-device/PAPER" in status.stdout
    finally:
        proc.send_signal(sig)
        out, err = await asyncio.wait_for(proc.communicate(), timeout=30)
    stdout, stderr = out.decode(), err.decode()
    assert proc.returncode == 0, stderr
    assert "terminal sim → feed SIM: EURUSD, GBPUSD" in stdout
    assert "terminal sim:PAPER → feed PAPER: EURUSD, GBPUSD" in stdout
    assert stdout.rstrip().endswith("stopped cleanly")
    assert "warning: no device key stored; using the development key" in stderr
    assert "Traceback" not in stderr
    assert set(bridge.hellos[0].sources) == {"dev-device/SIM", "dev-device/PAPER"}
