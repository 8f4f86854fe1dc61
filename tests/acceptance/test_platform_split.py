"""`aitrading up --split`: every service its own process on PostgreSQL, Redis and NATS."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import psutil
import pytest
from platform_helpers import app_role_for, metric, platform_env, running, url, wait_ready

from aitrading.common.config import SERVICE_NAMES

pytestmark = [pytest.mark.acceptance, pytest.mark.integration, pytest.mark.slow]


def test_split_starts_every_service_as_a_process_and_the_gateway_reports_them_all(
    tmp_path: Path, fresh_postgres_db: str, redis_url: str, nats_url: str
) -> None:
    env = platform_env(
        tmp_path,
        AITRADING_STORAGE__OLTP_URL=fresh_postgres_db,
        AITRADING_STORAGE__OLTP_APP_ROLE=app_role_for(fresh_postgres_db),
        AITRADING_STORAGE__REDIS_URL=redis_url,
        AITRADING_BUS__NATS_URL=nats_url,
        AITRADING_SIMULATOR__RATE_FACTOR="5",
    )
    with running(["up", "--split"], env, tmp_path) as proc:
        body = wait_ready(url(env, "gateway"), proc, timeout_s=120)
        services = body["services"]
        assert isinstance(services, dict)
        assert set(services) == set(SERVICE_NAMES) - {"gateway"}
        assert all(s["ready"] for s in services.values())
        assert services["bridge"]["checks"]["bus"] == "ok"
        served = {" ".join(c.cmdline()[3:5]) for c in psutil.Process(proc.pid).children()}
        assert {f"serve {name}" for name in SERVICE_NAMES} <= served

        # The launcher starts the agent once every service is ready; stored ticks prove it streams.
        bridge = url(env, "bridge")
        deadline = time.monotonic() + 60
        while (
            time.monotonic() < deadline and metric(bridge, "aitrading_bridge_store_ticks_written_total") == 0
        ):
            time.sleep(0.5)
        assert metric(bridge, "aitrading_bridge_store_ticks_written_total") > 0
        children = psutil.Process(proc.pid).children()
        assert any("agent" in c.cmdline() for c in children)

        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert not any(c.is_running() and c.status() != psutil.STATUS_ZOMBIE for c in children)
