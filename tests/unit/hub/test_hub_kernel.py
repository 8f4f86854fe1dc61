"""All-in-one wiring: the kernel's services report to the hub over the bus, serve over TLS when asked."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog

from aitrading.certs import init_certs
from aitrading.common.config import PlatformConfig, load_config
from aitrading.common.errors import ConfigError
from aitrading.common.logging import ERROR_REPORTER, configure_logging
from aitrading.common.tls import client_ssl_context, service_url
from aitrading.kernel import Kernel


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def platform(tmp_path: Path, **extra: Any) -> PlatformConfig:
    return load_config(
        mode="test",
        services={"hub": free_port(), "config": free_port(), "enabled": ["hub", "config"]},
        storage={"data_dir": str(tmp_path / "var")},
        hub={"heartbeat_interval_s": 0.05},
        simulator={"enabled": False},
        **extra,
    )


@pytest.fixture
async def kernel(tmp_path: Path) -> AsyncIterator[Kernel]:
    configure_logging("WARNING")
    ERROR_REPORTER._pending.clear()
    k = Kernel(platform(tmp_path), simulate=False)
    await k.start()
    try:
        yield k
    finally:
        await k.stop()


async def until_ok(check: Any, timeout: float = 10.0) -> Any:
    last: Any = None
    for _ in range(int(timeout / 0.05)):
        last = await check()
        if last:
            return last
        await asyncio.sleep(0.05)
    raise AssertionError(f"not reached in time; last {last!r}")


async def test_every_service_of_the_process_registers_with_the_hub_and_errors_reach_errordna(
    kernel: Kernel,
) -> None:
    cfg = kernel.config
    headers = {"Authorization": f"Bearer {kernel.tokens.issue('ops', roles=['platform_admin'])}"}
    async with httpx.AsyncClient(base_url=service_url(cfg, "hub"), headers=headers, timeout=5) as hub:

        async def registered() -> bool:
            body = (await hub.get("/api/v1/services")).json()
            return {s["name"] for s in body["services"] if s["status"] == "ready"} == {"hub", "config"}

        await until_ok(registered)
        services = (await hub.get("/api/v1/services")).json()["services"]
        endpoints = {s["name"]: s["endpoint"] for s in services}
        assert endpoints == {"hub": service_url(cfg, "hub"), "config": service_url(cfg, "config")}
        assert (await hub.get("/api/v1/health")).json()["status"] == "ok"
        graph = (await hub.get("/api/v1/graph")).json()
        assert graph["start_order"] == kernel.service_names == ["hub", "config"]

        try:
            load_config(services={"hub": 1, "config": 1})
        except ConfigError:
            structlog.get_logger("config").exception("reload_failed", service="config")

        async def grouped() -> list[dict[str, Any]]:
            errors: list[dict[str, Any]] = (await hub.get("/api/v1/errors")).json()["errors"]
            return errors

        [group] = await until_ok(grouped)
        assert group["services"] == ["config"]
        assert group["recovery"] == "stop"
        assert group["severity"] == "critical"
        assert group["frames"][0] == "aitrading.common.config:load_config"


async def test_with_tls_and_mtls_the_kernel_serves_https_that_needs_a_client_certificate(
    tmp_path: Path,
) -> None:
    certs = tmp_path / "certs"
    init_certs(certs, services=("hub", "config"), clients=("cli",))
    cfg = platform(tmp_path, security={"tls": {"enabled": True, "cert_dir": str(certs), "mtls": True}})
    kernel = Kernel(cfg, ["hub"], simulate=False)
    await kernel.start()
    try:
        url = service_url(cfg, "hub")
        assert url.startswith("https://")
        async with httpx.AsyncClient(verify=client_ssl_context(cfg, "cli"), timeout=5) as client:
            assert (await client.get(f"{url}/health/ready")).status_code == 200
        anonymous = ssl.create_default_context(cafile=str(certs / "ca.crt"))  # trusts the server, no cert
        async with httpx.AsyncClient(verify=anonymous, timeout=5) as client:
            with pytest.raises(httpx.TransportError):
                await client.get(f"{url}/health/ready")
    finally:
        await kernel.stop()


async def test_tls_without_certificates_fails_at_start_naming_the_fix(tmp_path: Path) -> None:
    cfg = platform(tmp_path, security={"tls": {"enabled": True, "cert_dir": str(tmp_path / "none")}})
    kernel = Kernel(cfg, ["hub"], simulate=False)
    with pytest.raises(ConfigError, match="aitrading certs init"):
        await kernel.start()
