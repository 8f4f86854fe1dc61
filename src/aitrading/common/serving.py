"""Serve several ASGI apps from one process, each on its own pre-bound port.

Ports are bound before anything starts so a port already in use is one clear error, not a traceback
half-way through start-up. Signals belong to the caller (the kernel), not to uvicorn. A server given
`ServerTLS` serves HTTPS with the context of `aitrading.common.tls.server_ssl_context` (TLS 1.2+, client
certificates required under mTLS).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
import ssl
from collections.abc import Callable, Coroutine, Generator
from typing import Any, Literal, TypeVar

import uvicorn
from fastapi import FastAPI

from aitrading.common.errors import ConfigError
from aitrading.common.tls import ServerTLS, server_ssl_context

__all__ = ["HttpServers", "bind", "run"]

_T = TypeVar("_T")


def run(main: Coroutine[Any, Any, _T], loop: Literal["auto", "uvloop", "asyncio"] = "auto") -> _T:
    """Run `main` to completion on a new event loop of the kind asked (`services.event_loop`).

    uvloop serves the platform's HTTP 10-25 % faster than asyncio's loop (`aitrading bench gateway
    --server-loop`); `auto` uses it when it is importable, `uvloop` insists on it.
    """
    if loop != "asyncio":
        try:
            import uvloop
        except ImportError:
            if loop == "uvloop":
                main.close()
                raise ConfigError(
                    "services.event_loop is uvloop but uvloop is not installed (pip install uvloop)"
                ) from None
        else:
            return uvloop.run(main)
    return asyncio.run(main)


def bind(host: str, port: int, what: str) -> socket.socket:
    """Bind a listening TCP socket or raise `ConfigError` naming the port and its owner-to-be."""
    # IPPROTO_TCP named explicitly: accepted sockets inherit the protocol number, and asyncio only sets
    # TCP_NODELAY on sockets whose `proto` says TCP; with 0, every small answer on the default event loop
    # waited ~40 ms for the client's delayed ACK (Nagle). uvloop sets it regardless.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # inherited by accepted sockets on Linux
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(f"port {port} ({what}) is already in use on {host}") from None
        raise ConfigError(f"cannot listen on {host}:{port} ({what}): {exc.strerror}") from None
    sock.listen(2048)
    sock.setblocking(False)
    return sock


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # The kernel handles SIGINT/SIGTERM once for every server in the process.
        yield


class HttpServers:
    """A set of uvicorn servers sharing one event loop."""

    def __init__(self) -> None:
        self._bound: list[tuple[str, Callable[[], FastAPI], socket.socket, int, ssl.SSLContext | None]] = []
        self._servers: list[tuple[str, _Server, socket.socket]] = []
        self._tasks: list[asyncio.Task[None]] = []

    def add(
        self,
        name: str,
        app: Callable[[], FastAPI],
        host: str,
        port: int,
        *,
        ws_max_size: int = 16 * 2**20,
        tls: ServerTLS | None = None,
    ) -> None:
        """Bind `host:port` now; serve the app that `app()` returns there (HTTPS with `tls`) on `start`."""
        ssl_context = server_ssl_context(tls) if tls is not None else None  # bad cert files fail here, early
        self._bound.append((name, app, bind(host, port, name), ws_max_size, ssl_context))

    def port(self, name: str) -> int:
        """Return the port bound for `name` (useful when it was 0: any free port)."""
        for bound_name, _, sock, _, _ in self._bound:
            if bound_name == name:
                port: int = sock.getsockname()[1]
                return port
        raise KeyError(name)

    async def start(self) -> None:
        """Start serving; returns once every server accepts connections."""
        for name, app, sock, ws_max_size, ssl_context in self._bound:
            config = uvicorn.Config(
                app(),
                log_config=None,
                access_log=False,
                lifespan="off",
                ws_max_size=ws_max_size,
                timeout_graceful_shutdown=5,
            )
            if ssl_context is not None:
                config.load()
                config.ssl = ssl_context  # our context, not one uvicorn builds from file names
            server = _Server(config)
            self._servers.append((name, server, sock))
            self._tasks.append(asyncio.create_task(server.serve(sockets=[sock]), name=f"http:{name}"))
        while not all(server.started for _, server, _ in self._servers):
            for task in self._tasks:
                if task.done():
                    task.result()
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        """Stop accepting, finish open requests (briefly) and close the sockets."""
        for _, server, _ in self._servers:
            server.should_exit = True
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self.close_sockets()
        self._tasks.clear()
        self._servers.clear()

    def close_sockets(self) -> None:
        """Release the bound ports (also when start was never reached)."""
        for _, _, sock, _, _ in self._bound:
            sock.close()
        self._bound.clear()
