"""`aitrading up` as a newcomer runs it: ready, ticks flowing end to end, clean stop."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
from platform_helpers import metric, platform_env, running, url, wait_ready

from aitrading.common.config import SERVICE_NAMES

pytestmark = [pytest.mark.acceptance, pytest.mark.slow]


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_up_is_ready_streams_simulated_ticks_into_the_store_and_stops_cleanly(
    tmp_path: Path, stop_signal: signal.Signals
) -> None:
    env = platform_env(tmp_path, AITRADING_SIMULATOR__RATE_FACTOR="5")
    with running(["up"], env, tmp_path) as proc:
        body = wait_ready(url(env, "gateway"), proc)
        services = body["services"]
        assert isinstance(services, dict)
        assert set(services) == set(SERVICE_NAMES) - {"gateway"}
        assert all(s["ready"] for s in services.values())

        bridge = url(env, "bridge")
        first = metric(bridge, "aitrading_bridge_store_ticks_written_total")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            time.sleep(0.5)
            now = metric(bridge, "aitrading_bridge_store_ticks_written_total")
            if now > first and metric(bridge, "aitrading_bridge_last_bid", symbol="EURUSD") > 0:
                break
        assert now > first, "stored tick counter did not rise"
        assert metric(bridge, "aitrading_bridge_ticks_accepted_total", feed="SIM") >= now
        assert metric(bridge, "aitrading_bridge_agent_connections") == 1

        proc.send_signal(stop_signal)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err[-2000:]
    assert "stopped cleanly" in out
    assert "Traceback" not in err
