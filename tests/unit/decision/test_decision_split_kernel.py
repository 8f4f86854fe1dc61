"""Split mode as the launcher runs it: the decision service in one kernel, the trading engine in another,
orders between them over HTTPS with client certificates (mTLS), as `aitrading up --split` wires them."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest
from decision_helpers import publish_flat_bars

from aitrading.certs import init_certs
from aitrading.common.clock import LiveClock
from aitrading.common.config import PlatformConfig, load_config
from aitrading.common.logging import configure_logging
from aitrading.decision.engine_client import EngineClient
from aitrading.decision.service import DecisionService
from aitrading.engine.service import EngineService
from aitrading.kernel import Kernel
from aitrading.model.accounts import AccountState
from aitrading.model.enums import MarginMode, OrderType
from aitrading.model.ids import AccountId, TenantId
from aitrading.model.market import Tick
from aitrading.model.values import price_raw
from aitrading.model.wire import AccountSnapshot
from aitrading.storage.oltp import Database, ensure_tenant

ACCOUNT = "10001"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cert_dir = tmp_path_factory.mktemp("certs")
    init_certs(cert_dir)
    return cert_dir


def _config(data_dir: Path, certs: Path, ports: dict[str, Any], tenant: str) -> PlatformConfig:
    return load_config(
        mode="test",
        services={**ports, "enabled": ["config", "engine", "decision"]},
        storage={"data_dir": str(data_dir)},
        simulator={"enabled": False},
        security={"tls": {"enabled": True, "cert_dir": str(certs), "mtls": True}},
        decision={
            "tenant": tenant,
            "account": ACCOUNT,
            "feed": "F",
            "symbols": "EURUSD",
            "timeframe": "H1",
            "strategies": "sma_cross:fast=2,slow=3,volume=0.1",
        },
    )


async def test_split_decision_service_sends_its_orders_to_the_engine_process_over_mtls(
    tmp_path: Path, certs: Path
) -> None:
    configure_logging("WARNING")
    data_dir = tmp_path / "var"
    ports = {"config": _port(), "engine": _port(), "decision": _port()}
    db = Database.from_config(_config(data_dir, certs, ports, ""), clock=LiveClock(), migrate_on_start=True)
    await db.start()
    async with db.session() as session:
        tenant = str((await ensure_tenant(session, "acme", "Acme Fund")).id)
        await session.commit()
    await db.stop()
    cfg = _config(data_dir, certs, ports, tenant)
    engine_side = Kernel(cfg, ["config", "engine"], simulate=False)
    decision_side = Kernel(cfg, ["decision"], simulate=False, migrate=False)
    await engine_side.start()
    try:
        await decision_side.start()
        try:
            engine_service = engine_side.services["engine"]
            assert isinstance(engine_service, EngineService)
            engine = engine_service.engine
            await engine.on_snapshot(
                AccountSnapshot(
                    tenant=TenantId(tenant),
                    account=AccountId(ACCOUNT),
                    ts_ns=engine_side.clock.now_ns(),
                    account_state=AccountState.of(
                        login=int(ACCOUNT),
                        currency="USD",
                        leverage=100,
                        margin_mode=MarginMode.RETAIL_NETTING,
                        balance="10000",
                    ),
                    positions=[],
                    orders=[],
                    deals_from_ns=0,
                    deals=[],
                )
            )
            engine.books[(TenantId(tenant), AccountId(ACCOUNT))].feed = "SIM"
            assert engine_side.bus is not None
            assert decision_side.bus is not None
            now_ms = engine_side.clock.now_ms()
            tick = Tick(
                feed="SIM", symbol="EURUSD", time_msc=now_ms, bid=price_raw("1.1"), ask=price_raw("1.1001")
            )
            await engine_side.bus.publish("md.tick.SIM.EURUSD", tick)

            decision = decision_side.services["decision"]
            assert isinstance(decision, DecisionService)
            assert decision.pipeline is not None
            client = decision.pipeline.engine_client
            assert isinstance(client, EngineClient)
            assert client.status()["engine"] == f"https://127.0.0.1:{ports['engine']}"
            assert decision_side.bus is not None
            await publish_flat_bars(decision_side.bus, [5, 4, 3, 2, 1, 2, 3, 4], 0)  # long on the last bar

            [sent] = decision.pipeline.engine.orders
            book = engine.book(TenantId(tenant), AccountId(ACCOUNT))
            assert book is not None
            order = book.orders[sent.client_order_id]
            assert (order.type, order.strategy) == (OrderType.BUY, "ensemble")
            assert client.counters["accepted"] == 1
            # At start the engine did not know the account yet (a 404, counted), before the decision it did.
            assert (client.counters["positions_failures"], client.counters["positions_refreshed"]) == (1, 1)
        finally:
            await decision_side.stop()
    finally:
        await engine_side.stop()
