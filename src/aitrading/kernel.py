"""The kernel builds the system from one config: the whole platform in one process, or one service.

It owns the process's shared resources (bus, OLTP database, tick store, cache), starts services in
dependency order, serves each on its own port, and in development runs a simulated MT5 terminal with a PC
agent streaming into the data bridge. Stop is the reverse order, flushing as it goes.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Sequence
from typing import Any

import structlog

from aitrading.common.auth import TokenService
from aitrading.common.bus import Bus
from aitrading.common.clock import Clock, LiveClock
from aitrading.common.config import SERVICE_NAMES, PlatformConfig
from aitrading.common.errors import ConfigError
from aitrading.common.service import Check, Service
from aitrading.common.serving import HttpServers
from aitrading.common.tls import server_tls
from aitrading.topology import RESOURCES, start_order

__all__ = ["Kernel"]

_log = structlog.get_logger("kernel")

DEV_TENANT = "dev"


class Kernel:
    """One process of the platform."""

    def __init__(
        self,
        config: PlatformConfig,
        services: Sequence[str] | None = None,
        *,
        clock: Clock | None = None,
        simulate: bool | None = None,
        migrate: bool = True,
        owns_ticks: bool = True,
    ) -> None:
        self.config = config
        self.clock: Clock = clock or LiveClock()
        names = list(services) if services is not None else list(config.services.enabled)
        unknown = [n for n in names if n not in SERVICE_NAMES]
        if unknown:
            raise ConfigError(f"unknown service(s) {', '.join(unknown)}; known: {', '.join(SERVICE_NAMES)}")
        self.service_names = start_order(names)
        self.simulate = config.simulator.enabled if simulate is None else simulate
        self._migrate = migrate
        self._owns_ticks = owns_ticks
        needed: set[str] = set()
        for name in self.service_names:
            needed |= RESOURCES[name]
        if not owns_ticks:
            needed.discard("ticks")
        self._needed = needed
        self.bus: Bus | None = None
        self.db: Any = None
        self.ticks: Any = None
        self.cache: Any = None
        self.services: dict[str, Service] = {}
        self.tokens = TokenService(config.security.service_token_secret.get_secret_value(), clock=self.clock)
        self._http = HttpServers()
        self._sim: Any = None
        self._agent: Any = None
        self._started: list[Callable[[], Any]] = []
        self._stop_event = asyncio.Event()

    # ----------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Bind ports, start resources, services, HTTP and (if asked) the simulated terminal and agent."""
        host = self.config.services.host
        self._started.append(self._release_ports)
        try:
            for name in self.service_names:
                max_ws = self.config.bridge.max_frame_bytes if name == "bridge" else 16 * 2**20
                port = self.config.services.port(name)
                tls = server_tls(self.config, name)  # HTTPS with the service's certificate when TLS is on
                self._http.add(name, self._app_of(name), host, port, ws_max_size=max_ws, tls=tls)
            await self._start_resources()
            for name in self.service_names:
                self.services[name] = self._build_service(name)
                await self.services[name].start()
                self._started.append(self.services[name].stop)
            await self._http.start()
            self._started.append(self._http.stop)
            if self.simulate and "bridge" in self.services:
                await self._start_simulation()
        except BaseException:
            await self.stop()
            raise
        _log.info("kernel_started", services=self.service_names, simulate=self.simulate)

    async def stop(self) -> None:
        """Stop everything in reverse start order; errors are logged, not raised, so all of it stops."""
        while self._started:
            stop = self._started.pop()
            try:
                await stop()
            except Exception:
                _log.exception("stop_failed", what=getattr(stop, "__qualname__", repr(stop)))
        _log.info("kernel_stopped")

    def _app_of(self, name: str) -> Callable[[], Any]:
        return lambda: self.services[name].app

    async def _release_ports(self) -> None:
        self._http.close_sockets()

    def request_stop(self) -> None:
        """Ask `run_until_stopped` to return (signal handlers call this)."""
        self._stop_event.set()

    async def run_until_stopped(self, on_ready: Callable[[Kernel], None] | None = None) -> None:
        """Start, wait for SIGINT/SIGTERM (or `request_stop`), then stop cleanly."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.request_stop)
        try:
            await self.start()
            if on_ready is not None:
                on_ready(self)
            await self._stop_event.wait()
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
            await self.stop()

    # ----------------------------------------------------------------- resources

    async def _start_resources(self) -> None:
        cfg = self.config
        cfg.storage.data_dir.mkdir(parents=True, exist_ok=True)
        if "bus" in self._needed:
            from aitrading.common.bus.factory import make_bus

            bus = make_bus(cfg.bus.kind, nats_url=cfg.bus.nats_url, stream_prefix=cfg.bus.stream_prefix)
            await bus.connect()
            self.bus = bus
            self._started.append(bus.close)
        if "db" in self._needed:
            from aitrading.storage.oltp import Database

            # PostgreSQL: the services log in as the non-owner app role that row-level security binds
            # (ADR 0015); migrations, when this process runs them, go through the owner's URL.
            self.db = Database.from_config(cfg, clock=self.clock, migrate_on_start=self._migrate)
            await self.db.start()
            self._started.append(self.db.stop)
            if cfg.mode == "development":
                await self._provision_dev_device()
        if "ticks" in self._needed:
            from aitrading.storage.ticks import make_tick_store

            self.ticks = make_tick_store(
                cfg.storage.ticks, chdb_path=cfg.storage.chdb_path, clickhouse_url=cfg.storage.clickhouse_url
            )
            await self.ticks.start()
            self._started.append(self.ticks.stop)
        if "cache" in self._needed:
            from aitrading.storage.cache import make_cache

            self.cache = make_cache(cfg.storage.cache, url=cfg.storage.redis_url, clock=self.clock)
            self._started.append(self.cache.close)

    async def _provision_dev_device(self) -> None:
        from aitrading.storage.oltp import ensure_device, ensure_tenant

        async with self.db.session() as session:
            tenant = await ensure_tenant(session, DEV_TENANT, "Development")
            await ensure_device(
                session,
                tenant.id,
                self.config.agent.device_id,
                self.config.security.dev_device_key.get_secret_value(),
            )
            await session.commit()

    def checks_for(self, name: str) -> dict[str, Check]:
        """The readiness checks of service `name` over this process's resources."""
        checks: dict[str, Check] = {}
        needs = RESOURCES[name] & self._needed
        if "bus" in needs and self.bus is not None:
            bus = self.bus

            async def bus_ok() -> bool:
                return bus.is_connected

            checks["bus"] = bus_ok
        if "db" in needs:
            checks["database"] = self.db.ping
        if "ticks" in needs:
            checks["tick_store"] = self.ticks.ping
        if "cache" in needs:
            checks["cache"] = self.cache.ping
        return checks

    def _build_service(self, name: str) -> Service:
        from aitrading import services

        return services.build(name, self)

    # ----------------------------------------------------------------- simulation

    async def _start_simulation(self) -> None:
        from aitrading.simulation import start_simulated_agent

        stop = await start_simulated_agent(self.config, self.clock)
        self._started.append(stop)
