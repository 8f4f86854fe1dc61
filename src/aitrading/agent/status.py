"""The agent's local status API (`GET /status` on 127.0.0.1:9001).

It shows the trader whether ticks flow: the bridge link, the buffer depth, ticks per second read and
sent, the acknowledged sequence per source and the last error; and how order execution goes: the
accounts executed for, commands executed, recovered and failed, and the journal's unfinished commands.
It binds to loopback unless told otherwise, because it has no authentication of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterator

import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel, Field

from aitrading import __version__
from aitrading.common.errors import ConfigError

__all__ = [
    "AgentStatus",
    "ExecutionStatus",
    "OrderInFlight",
    "SourceStatus",
    "StatusServer",
    "create_status_app",
]


class SourceStatus(BaseModel):
    """One tick source (`<device>/<feed>`)."""

    src: str
    acked_seq: int
    buffered_batches: int
    symbols: list[str]


class OrderInFlight(BaseModel):
    """A journalled command whose report the bridge has not acknowledged yet."""

    client_order_id: str
    account: str
    state: str
    """`received` (not sent yet), `sending` (sent, result not journalled) or `done` (report not acked)."""
    age_s: float


class ExecutionStatus(BaseModel):
    """Order execution since the agent started."""

    tenant: str = ""
    accounts: dict[str, str] = Field(default_factory=dict)
    """Accounts executed for → their feed."""
    executed: int = 0
    recovered: int = 0
    failed: int = 0
    duplicates: int = 0
    foreign: int = 0
    in_flight_total: int = 0
    in_flight: list[OrderInFlight] = Field(default_factory=list)
    """The oldest unfinished commands (at most 100)."""


class AgentStatus(BaseModel):
    """What `GET /status` answers."""

    state: str
    link: str
    bridge_url: str
    device_id: str
    buffered_batches: int
    buffered_ticks: int
    ticks_per_s_read: float
    ticks_per_s_sent: float
    ticks_read: int
    ticks_sent: int
    reconnects: int
    sources: list[SourceStatus]
    last_error: str
    execution: ExecutionStatus = Field(default_factory=ExecutionStatus)
    version: str = __version__


def create_status_app(status: Callable[[], Awaitable[AgentStatus]]) -> FastAPI:
    """Return the status app; `status` builds the current `AgentStatus`."""
    app = FastAPI(title="aitrading agent", version=__version__, docs_url=None, redoc_url=None)

    @app.get("/status")
    async def get_status() -> AgentStatus:
        return await status()

    return app


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # the agent, not this side server, owns SIGINT/SIGTERM


class StatusServer:
    """Serve an app with uvicorn inside the running event loop."""

    def __init__(
        self, app: FastAPI, *, host: str = "127.0.0.1", port: int = 9001, allow_remote: bool = False
    ):
        if not allow_remote and not _is_loopback(host):
            raise ConfigError(
                f"the agent status API has no login; bind it to 127.0.0.1, not {host} (or allow_remote=True)"
            )
        self._host, self._port = host, port
        self._server = _Server(
            uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False, lifespan="off")
        )
        self._sock: socket.socket | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start serving; raise `OSError` at once if the port cannot be bound."""
        # Bind here: uvicorn answers a bind failure with sys.exit, which would end the whole agent.
        family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
        self._sock = socket.create_server((self._host, self._port), family=family)
        self._task = asyncio.create_task(self._server.serve(sockets=[self._sock]), name="agent-status")
        while not self._server.started and not self._task.done():  # noqa: ASYNC110 - uvicorn has only a flag
            await asyncio.sleep(0.01)
        if self._task.done():
            self._task.result()

    async def stop(self) -> None:
        """Stop serving."""
        if self._task is not None:
            self._server.should_exit = True
            with contextlib.suppress(Exception):
                await self._task
            self._task = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    @property
    def port(self) -> int:
        """The bound port (useful with port 0)."""
        if self._sock is None:
            return self._port
        port: int = self._sock.getsockname()[1]
        return port


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
