"""The PC agent: terminal(s) → streamer → durable buffer → bridge client, plus the local status API.

Terminals that can trade (they have `order_send` and the history functions) are also trading accounts:
the agent declares them to the bridge and executes the trade commands it forwards, exactly once per
client order id (`executor.OrderExecutor`, journalled beside the buffer), reporting each result and
snapshots of each account.

`stop()` lets each streamer store its partial batch, gives the client a moment to get the last batches
acknowledged, then closes the socket with a normal close. Whatever is still unacknowledged stays in the
buffer and goes out after the next start.

If the bridge refuses the device, the agent becomes FAULTED with the reason, but the streamers keep
storing ticks so nothing is lost once the key is fixed and the agent restarted.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import ssl
from collections.abc import Coroutine, Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aitrading.agent.buffer import DurableBuffer
from aitrading.agent.client import BridgeClient, LinkState
from aitrading.agent.executor import OrderExecutor, TradingAccount
from aitrading.agent.journal import OrderJournal, journal_path_for
from aitrading.agent.status import (
    AgentStatus,
    ExecutionStatus,
    OrderInFlight,
    SourceStatus,
    StatusServer,
    create_status_app,
)
from aitrading.agent.streamer import TickStreamer
from aitrading.agent.terminal import TickSource
from aitrading.agent.trading import TradingTerminal
from aitrading.common.bus.codec import Message
from aitrading.common.clock import Clock, LiveClock
from aitrading.common.config import AgentConfig
from aitrading.common.errors import ConfigError
from aitrading.common.lifecycle import Component
from aitrading.model.commands import TradeCommand
from aitrading.model.ids import AccountId, account_id
from aitrading.model.wire import BridgeWelcome, ReportAck, SpecsRequest

__all__ = ["Agent", "TerminalFeed"]


@dataclass(frozen=True)
class TerminalFeed:
    """One MT5 terminal and what to read from it.

    `feed` names the broker server (ticks go to `md.tick.<feed>.<symbol>`); with no `symbols` the agent
    reads the terminal's visible (Market Watch) symbols. `offload=False` calls the terminal on the event
    loop, for in-process simulated terminals.

    A terminal that can trade is executed for unless `execute=False`; `account` is its account id on the
    bus (`ord.cmd.<tenant>.<account>`), by default the terminal's login.
    """

    feed: str
    terminal: TickSource
    symbols: tuple[str, ...] = ()
    offload: bool = True
    account: str | None = None
    execute: bool = True


class Agent(Component):
    """Stream ticks from MT5 terminals to the data bridge without losing or duplicating any."""

    name = "agent"

    def __init__(
        self,
        config: AgentConfig,
        feeds: Sequence[TerminalFeed],
        *,
        device_key: str,
        clock: Clock | None = None,
        status_api: bool = False,
        status_host: str = "127.0.0.1",
        drain_timeout_s: float = 2.0,
        window_batches: int = 64,
        backoff_base_s: float = 0.5,
        backoff_cap_s: float = 30.0,
        rng: random.Random | None = None,
        snapshot_interval_s: float = 5.0,
        deals_window_s: float = 86_400.0,
        crash_after_order_send: bool | None = None,
    ) -> None:
        super().__init__()
        if not feeds:
            raise ConfigError("the agent needs at least one terminal feed")
        if len({f.feed for f in feeds}) != len(feeds):
            raise ConfigError("two terminal feeds share a feed name")
        if config.buffer_path is None or not config.bridge_url:
            raise ConfigError(
                "agent config needs bridge_url and buffer_path (see PlatformConfig.resolved_agent)"
            )
        if not device_key:
            raise ConfigError("the agent needs a device key (aitrading agent credentials)")
        self.config = config
        self.feeds = tuple(feeds)
        self.clock: Clock = clock or LiveClock()
        self.buffer: DurableBuffer | None = None
        self.client: BridgeClient | None = None
        self.streamers: list[TickStreamer] = []
        self.status_server: StatusServer | None = None
        self._key = device_key
        self._status_api = status_api
        self._status_host = status_host
        self._drain_timeout = drain_timeout_s
        self._client_opts = (window_batches, backoff_base_s, backoff_cap_s, rng)
        self._tasks: list[asyncio.Task[None]] = []
        self._client_task: asyncio.Task[None] | None = None
        self.journal: OrderJournal | None = None
        self.executor: OrderExecutor | None = None
        self._executor_opts = (snapshot_interval_s, deals_window_s, crash_after_order_send)
        self._order_tasks: set[asyncio.Task[object]] = set()

    async def _digits(self, feed: TerminalFeed) -> dict[str, int]:
        """Ask the terminal for each streamed symbol's digits (announced to the bridge in the hello)."""

        def read() -> dict[str, int]:
            infos = feed.terminal.symbols_get() or ()
            wanted = set(feed.symbols)
            return {
                i.name: int(i.digits)
                for i in infos
                if getattr(i, "digits", None) is not None and (not wanted or i.name in wanted)
            }

        return await asyncio.to_thread(read) if feed.offload else read()

    def source(self, feed: str) -> str:
        """Return the source id (`<device>/<feed>`) of `feed`."""
        return f"{self.config.device_id}/{feed}"

    # -- lifecycle ---------------------------------------------------------------------------------

    async def _on_start(self) -> None:
        try:
            await self._build_and_start()
        except BaseException:
            await self._on_stop()  # release the buffer's lock and the terminal threads
            raise

    async def _build_and_start(self) -> None:
        cfg = self.config
        assert cfg.buffer_path is not None  # checked in __init__
        self.buffer = buffer = await asyncio.to_thread(DurableBuffer, cfg.buffer_path)
        executor = await self._start_executor(journal_path_for(cfg.buffer_path))
        window, base, cap, rng = self._client_opts
        client = BridgeClient(
            buffer,
            url=cfg.bridge_url,
            device_id=cfg.device_id,
            device_key=self._key,
            sources=[self.source(f.feed) for f in self.feeds],
            clock=self.clock,
            window_batches=window,
            backoff_base_s=base,
            backoff_cap_s=cap,
            rng=rng,
            on_welcome=self._on_welcome,
            symbols={f.feed: await self._digits(f) for f in self.feeds},
            accounts={a.account: a.feed for a in executor.accounts.values()} if executor else None,
            on_message=self._on_message,
            on_connected=self._on_connected,
            ssl_context=bridge_ssl_context(cfg.ca_file),
        )
        self.client = client
        for feed in self.feeds:
            streamer = TickStreamer(
                feed.terminal,
                buffer,
                src=self.source(feed.feed),
                feed=feed.feed,
                symbols=feed.symbols or await self._visible_symbols(feed),
                clock=self.clock,
                batch_max=cfg.batch_max,
                flush_ms=cfg.flush_ms,
                poll_ms=cfg.poll_ms,
                offload=feed.offload,
                on_batch=client.notify,
            )
            await streamer.load()
            self.streamers.append(streamer)
        if self._status_api:
            self.status_server = StatusServer(
                create_status_app(self.status), host=self._status_host, port=cfg.status_port
            )
            await self.status_server.start()
        for streamer in self.streamers:
            task = asyncio.create_task(streamer.run(), name=f"agent-stream-{streamer.feed}")
            task.add_done_callback(self._on_task_done)
            self._tasks.append(task)
        self._client_task = asyncio.create_task(client.run(), name="agent-bridge-client")
        self._client_task.add_done_callback(self._on_task_done)
        if executor is not None:
            task = asyncio.create_task(
                executor.run_snapshots(lambda: client.state is LinkState.CONNECTED), name="agent-snapshots"
            )
            task.add_done_callback(self._on_task_done)
            self._tasks.append(task)

    async def _start_executor(self, path: Path | str) -> OrderExecutor | None:
        """Open the order journal and settle what a crash left behind, if any terminal trades."""
        accounts = await self._trading_accounts()
        if not accounts:
            return None
        interval, window, crash = self._executor_opts
        self.journal = journal = await asyncio.to_thread(OrderJournal, path)
        self.executor = executor = OrderExecutor(
            journal,
            accounts,
            clock=self.clock,
            send=self._send_to_bridge,
            snapshot_interval_s=interval,
            deals_window_s=window,
            crash_after_order_send=crash,
        )
        recovered = await executor.start()
        if recovered:
            self._log.warning("orders_recovered_after_restart", orders=[r.client_order_id for r in recovered])
        return executor

    async def _trading_accounts(self) -> list[TradingAccount]:
        accounts: list[TradingAccount] = []
        for feed in self.feeds:
            term = feed.terminal
            if not feed.execute or not isinstance(term, TradingTerminal):
                continue
            name = feed.account
            if name is None:
                info = await asyncio.to_thread(term.account_info) if feed.offload else term.account_info()
                if info is None or not getattr(info, "login", 0):
                    self._log.warning("terminal_not_logged_in", feed=feed.feed, hint="it streams, not trades")
                    continue
                name = str(info.login)
            try:
                account = account_id(name)
            except ValueError as exc:
                raise ConfigError(f"terminal of feed {feed.feed!r}: {exc}") from None
            if any(a.account == account for a in accounts):
                if feed.account is not None:
                    raise ConfigError(f"two terminals are account {account}; give each its own account id")
                # e.g. two simulated terminals with the same login: trade on the first, stream both
                self._log.warning(
                    "terminal_account_taken",
                    feed=feed.feed,
                    account=account,
                    hint="it streams only; give it its own account id to trade on it",
                )
                continue
            accounts.append(TradingAccount(AccountId(account), feed.feed, term, feed.symbols))
        return accounts

    async def _on_stop(self) -> None:
        for streamer in self.streamers:
            streamer.stop()
        for task in self._tasks:
            if task.get_name() == "agent-snapshots":
                task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)  # each stores its partial batch
        if self._order_tasks:  # let running orders report while the link is still up
            await asyncio.wait(self._order_tasks, timeout=self._drain_timeout)
        if self.client is not None:
            if self.client.state is LinkState.CONNECTED:
                await self.client.drain(self._drain_timeout)
            await self.client.stop()
        if self._client_task is not None:
            with suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(self._client_task, timeout=5.0)
        if self.status_server is not None:
            await self.status_server.stop()
        for streamer in self.streamers:
            streamer.close()
        await self._close_orders()
        if self.buffer is not None:
            await asyncio.to_thread(self.buffer.close)
        self._tasks.clear()
        self.streamers = []
        self.buffer = None
        self._client_task = None

    async def _close_orders(self) -> None:
        for task in list(self._order_tasks):
            task.cancel()
        await asyncio.gather(*self._order_tasks, return_exceptions=True)
        if self.executor is not None:
            await asyncio.to_thread(self.executor.close)  # a running order_send gets journalled first
        if self.journal is not None:
            await asyncio.to_thread(self.journal.close)
        self.executor = self.journal = None

    # -- status ------------------------------------------------------------------------------------

    async def status(self) -> AgentStatus:
        """Return what the local status API shows."""
        client, buffer = self.client, self.buffer
        depths: dict[str, int] = {}
        if buffer is not None:
            srcs = [s.src for s in self.streamers]
            with suppress(sqlite3.ProgrammingError):  # closed while stopping
                depths = await asyncio.to_thread(lambda: {src: buffer.depth(src) for src in srcs})
        sources = [
            SourceStatus(
                src=s.src,
                acked_seq=client.acked.get(s.src, 0) if client else 0,
                buffered_batches=depths.get(s.src, 0),
                symbols=list(s.symbols),
            )
            for s in self.streamers
        ]
        errors = [self.reason] if self.reason else []
        errors += [client.last_error] if client and client.last_error else []
        errors += [s.last_error for s in self.streamers if s.last_error]
        return AgentStatus(
            state=self.state.value,
            link=client.state.value if client else "idle",
            bridge_url=self.config.bridge_url,
            device_id=self.config.device_id,
            buffered_batches=buffer.depth() if buffer else 0,
            buffered_ticks=buffer.depth_ticks() if buffer else 0,
            ticks_per_s_read=sum(s.read.rate() for s in self.streamers),
            ticks_per_s_sent=client.sent.rate() if client else 0.0,
            ticks_read=sum(s.read.total for s in self.streamers),
            ticks_sent=client.sent.total if client else 0,
            reconnects=client.reconnects if client else 0,
            sources=sources,
            last_error=errors[0] if errors else "",
            execution=await self._execution_status(),
        )

    async def _execution_status(self) -> ExecutionStatus:
        executor = self.executor
        if executor is None:
            return ExecutionStatus()
        entries = []
        with suppress(sqlite3.ProgrammingError):  # closed while stopping
            entries = await asyncio.to_thread(executor.in_flight)
        now = self.clock.now_ns()
        c = executor.counts
        return ExecutionStatus(
            tenant=executor.tenant,
            accounts={a.account: a.feed for a in executor.accounts.values()},
            executed=c.executed,
            recovered=c.recovered,
            failed=c.failed,
            duplicates=c.duplicates,
            foreign=c.foreign,
            in_flight_total=len(entries),
            in_flight=[
                OrderInFlight(
                    client_order_id=e.client_order_id,
                    account=e.account,
                    state=e.state.value,
                    age_s=max(0, now - e.received_ns) / 1e9,
                )
                for e in entries[:100]
            ],
        )

    # -- internals ---------------------------------------------------------------------------------

    def _on_welcome(self, welcome: BridgeWelcome) -> None:
        for streamer in self.streamers:
            streamer.limit_batch(welcome.max_batch_ticks)

    def _on_connected(self, welcome: BridgeWelcome) -> None:
        if self.executor is not None:
            self._spawn(self.executor.on_connected(welcome.tenant), "agent-resend-reports")

    def _on_message(self, msg: Message) -> None:
        executor = self.executor
        if executor is None:
            return
        if isinstance(msg, TradeCommand):
            self._spawn(executor.submit(msg), f"agent-order-{msg.request.client_order_id}")
        elif isinstance(msg, ReportAck):
            self._spawn(executor.acked(msg), "agent-report-ack")
        elif isinstance(msg, SpecsRequest):
            self._spawn(executor.on_specs_request(msg), "agent-symbol-specs")

    async def _send_to_bridge(self, msg: Message) -> bool:
        return self.client is not None and await self.client.send_message(msg)

    def _spawn(self, coro: Coroutine[Any, Any, object], name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._order_tasks.add(task)
        task.add_done_callback(self._order_task_done)

    def _order_task_done(self, task: asyncio.Task[object]) -> None:
        self._order_tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            # The command stays in the journal; the engine's resend or the next connect picks it up.
            self._log.error("order_task_failed", task=task.get_name(), error=f"{type(exc).__name__}: {exc}")

    def _on_task_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            self._log.error("agent_task_failed", task=task.get_name(), error=str(exc))
            self.fault(str(exc))

    async def _visible_symbols(self, feed: TerminalFeed) -> tuple[str, ...]:
        infos = (
            await asyncio.to_thread(feed.terminal.symbols_get)
            if feed.offload
            else feed.terminal.symbols_get()
        )
        names = tuple(str(s.name) for s in infos or () if getattr(s, "visible", True))
        if not names:
            code, text = feed.terminal.last_error()
            raise ConfigError(f"terminal of feed {feed.feed!r} shows no symbols ({code} {text}); list them")
        return names


def bridge_ssl_context(ca_file: Path | None) -> ssl.SSLContext | None:
    """Return the context that verifies the bridge's certificate against `ca_file` (None: system CAs)."""
    if ca_file is None:
        return None
    if not ca_file.is_file():
        raise ConfigError(
            f"agent.ca_file {ca_file} does not exist (run `aitrading certs init` on the server)"
        )
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca_file))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx
