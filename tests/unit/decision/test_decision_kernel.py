"""The kernel's wiring: a trading decision service reads its tenant's order defaults from the config service
over HTTP (the config service's own port), and a change through the config API reaches the next order."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import httpx
from decision_helpers import publish_flat_bars

from aitrading.common.clock import LiveClock
from aitrading.common.config import PlatformConfig, load_config
from aitrading.common.logging import configure_logging
from aitrading.decision.defaults import ConfiguredOrderDefaults
from aitrading.decision.service import DecisionService
from aitrading.kernel import Kernel
from aitrading.model.enums import OrderFilling
from aitrading.storage.oltp import Database, ensure_tenant


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _config(data_dir: Path, ports: dict[str, Any], tenant: str) -> PlatformConfig:
    return load_config(
        mode="test",
        services={**ports, "enabled": ["config", "engine", "decision"]},
        storage={"data_dir": str(data_dir)},
        simulator={"enabled": False},
        decision={
            "tenant": tenant,
            "account": "7",
            "feed": "F",
            "symbols": "EURUSD",
            "timeframe": "H1",
            "strategies": "sma_cross:fast=2,slow=3",
        },
    )


async def _bars(kernel: Kernel, closes: list[int], start: int) -> None:
    assert kernel.bus is not None
    await publish_flat_bars(kernel.bus, closes, start)


async def test_the_kernel_wires_the_decision_engine_to_the_tenants_trading_config(tmp_path: Path) -> None:
    configure_logging("WARNING")
    data_dir = tmp_path / "var"
    ports = {"config": _port(), "engine": _port(), "decision": _port()}
    db = Database.from_config(_config(data_dir, ports, ""), clock=LiveClock(), migrate_on_start=True)
    await db.start()
    async with db.session() as session:
        tenant = str((await ensure_tenant(session, "acme", "Acme Fund")).id)
    await db.stop()
    kernel = Kernel(_config(data_dir, ports, tenant), simulate=False)
    await kernel.start()
    try:
        service = kernel.services["decision"]
        assert isinstance(service, DecisionService)
        assert service.pipeline is not None
        engine = service.pipeline.engine
        assert isinstance(engine.defaults, ConfiguredOrderDefaults)
        admin = kernel.tokens.issue("boss", tenant=tenant, roles=("tenant_admin",))
        auth = {"Authorization": f"Bearer {admin}"}
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=kernel.services["config"].app), base_url="http://config"
        ) as api:

            async def put(value: dict[str, Any], version: int) -> None:
                resp = await api.put(
                    "/api/v1/tenant/trading", json=value, headers={**auth, "If-Match": str(version)}
                )
                assert resp.status_code == 200, resp.text

            await put({"default_deviation_points": 7, "default_filling": "IOC"}, 0)
            await _bars(kernel, [5, 4, 3, 2, 1, 2, 3, 4], 0)
            assert [(o.deviation, o.filling) for o in engine.orders] == [(7, OrderFilling.IOC)]
            await put({"default_deviation_points": 44, "default_filling": "RETURN"}, 1)
            await _bars(kernel, [3, 2, 1], 8)
            assert [(o.deviation, o.filling) for o in list(engine.orders)[1:]] == [(44, OrderFilling.RETURN)]
        assert engine.defaults.failures == 0
    finally:
        await kernel.stop()
