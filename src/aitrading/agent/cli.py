"""`aitrading agent ...`: run the PC agent, keep its credentials, read its local status API.

The root CLI mounts `app` as `aitrading agent`. Secrets never come from command-line arguments. The
credential store is the OS keyring when a real one exists (`--store auto`, the default), else a file
encrypted with AES-256-GCM (`--file`, default `<storage.data_dir>/agent-credentials.bin`). The file's
passphrase is asked for with hidden input, or taken from `AITRADING_AGENT_PASSPHRASE`, which is removed
from the environment once read so child processes do not inherit it (and so the platform config, which
refuses unknown `AITRADING_*` keys, never sees it).
"""

from __future__ import annotations

import asyncio
import enum
import functools
import os
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import click
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from aitrading.common.errors import AITradingError, ConfigError, OperationalError

if TYPE_CHECKING:
    from aitrading.agent.credentials import CredentialStore
    from aitrading.agent.service import Agent
    from aitrading.agent.status import AgentStatus
    from aitrading.common.config import PlatformConfig

__all__ = ["PASSPHRASE_ENV", "app"]

PASSPHRASE_ENV = "AITRADING_AGENT_PASSPHRASE"  # noqa: S105 - the variable's name, not a secret
CREDENTIALS_FILE = "agent-credentials.bin"

app = typer.Typer(
    name="agent",
    help="The PC agent beside MT5: stream terminals to the data bridge, keep its credentials, show status.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
credentials_app = typer.Typer(
    help="The MT5 logins and the device key, in the OS keyring or an encrypted file whose passphrase is "
    f"prompted for or read from {PASSPHRASE_ENV}.",
    no_args_is_help=True,
)
app.add_typer(credentials_app, name="credentials")
console = Console()
err = Console(stderr=True)


class StoreKind(enum.StrEnum):
    """Where the credentials live."""

    auto = "auto"
    keyring = "keyring"
    file = "file"


StoreOpt = Annotated[StoreKind, typer.Option(help="auto: the OS keyring if usable, else the file")]
FileOpt = Annotated[
    Path | None,
    typer.Option(dir_okay=False, help=f"Credentials file (default <data_dir>/{CREDENTIALS_FILE})"),
]


@contextmanager
def _one_line_errors() -> Iterator[None]:
    """Turn every expected error into one red line and exit code 2, as the root CLI does."""
    try:
        yield
    except AITradingError as exc:
        _say(f"[red]error:[/] {escape(str(exc))}")
        raise typer.Exit(2) from None


def _say(markup: str) -> None:
    err.print(markup, soft_wrap=True, highlight=False)


def _setup(log_level: str | None = None) -> tuple[PlatformConfig, str | None]:
    """Take the passphrase out of the environment, then load the config and set up logging."""
    from aitrading.common.config import load_config
    from aitrading.common.logging import configure_logging

    passphrase = os.environ.pop(PASSPHRASE_ENV, None)
    cfg = load_config()
    level = log_level or ("WARNING" if "AITRADING_LOG_LEVEL" not in os.environ else cfg.log_level)
    configure_logging(level, json=cfg.log_json)
    return cfg, passphrase


def _prompt(text: str, *, confirm: bool = False) -> str:
    from aitrading.agent.credentials import CredentialError

    try:
        return str(typer.prompt(text, hide_input=True, confirmation_prompt=confirm))
    except click.exceptions.Abort:
        raise CredentialError(f"no answer to {text!r}") from None


def _open_store(
    cfg: PlatformConfig, kind: StoreKind, file: Path | None, env: str | None, stdin_busy: bool = False
) -> CredentialStore:
    """Open the credential store; the file's passphrase is asked for once, when first needed."""
    from aitrading.agent.credentials import CredentialError, CredentialStore

    if file is not None and kind is StoreKind.keyring:
        raise CredentialError("--file goes with --store file (or auto), not --store keyring")
    path = file or cfg.storage.data_dir / CREDENTIALS_FILE
    known = [env] if env else []

    def passphrase() -> str:
        if not known and stdin_busy:
            raise CredentialError(
                f"stdin holds the secret: give the passphrase of {path} in {PASSPHRASE_ENV}"
            )
        if not known:
            known.append(_prompt(f"Passphrase for {path}", confirm=not path.exists()))
        return known[0]

    prefer = StoreKind.file if file is not None else kind
    return CredentialStore.open(prefer=prefer.value, path=path, passphrase=passphrase)


def _credentials(kind: StoreKind, file: Path | None, stdin_busy: bool = False) -> CredentialStore:
    cfg, env = _setup()
    return _open_store(cfg, kind, file, env, stdin_busy)


def _where(store: CredentialStore) -> str:
    path = getattr(store.backend, "path", None)
    return f"the encrypted file {path}" if path is not None else "the OS keyring"


def _stdin_line(what: str) -> str:
    value = sys.stdin.readline().rstrip("\r\n")
    if not value:
        raise typer.BadParameter(f"no {what} on stdin")
    return value


# -- credentials -----------------------------------------------------------------------------------


@credentials_app.command("set-mt5")
def set_mt5(
    login: Annotated[int, typer.Option(min=1, help="The MT5 account number")],
    server: Annotated[str, typer.Option(help="The broker server, e.g. ICMarketsSC-Demo")],
    account: Annotated[str, typer.Option(help="Name to store it under (--terminal mt5:NAME)")] = "default",
    password_stdin: Annotated[bool, typer.Option("--password-stdin", help="Read it from stdin")] = False,
    store: StoreOpt = StoreKind.auto,
    file: FileOpt = None,
) -> None:
    """Store an MT5 login; the password is prompted for (hidden) or read from stdin."""
    from aitrading.agent.credentials import MT5Login
    from aitrading.agent.terminals import Mt5Accounts

    with _one_line_errors():
        creds = _credentials(store, file, stdin_busy=password_stdin)
        password = _stdin_line("password") if password_stdin else _prompt("MT5 password", confirm=True)
        Mt5Accounts(creds).set(account, MT5Login(login=login, password=password, server=server))
        console.print(f"stored MT5 login {login} on {server} as account {account!r} in {_where(creds)}")


@credentials_app.command("set-device-key")
def set_device_key(
    key_stdin: Annotated[bool, typer.Option("--key-stdin", help="Read the key from stdin")] = False,
    store: StoreOpt = StoreKind.auto,
    file: FileOpt = None,
) -> None:
    """Store the device key the data bridge knows this agent by (prompted for, or read from stdin)."""
    with _one_line_errors():
        creds = _credentials(store, file, stdin_busy=key_stdin)
        key = _stdin_line("device key") if key_stdin else _prompt("Device key")
        creds.set_device_key(key.strip())
        console.print(f"stored the device key in {_where(creds)}")


@credentials_app.command("show")
def show(store: StoreOpt = StoreKind.auto, file: FileOpt = None) -> None:
    """Show what is stored, with every secret masked."""
    from aitrading.agent.terminals import Mt5Accounts

    with _one_line_errors():
        creds = _credentials(store, file)
        accounts, key = Mt5Accounts(creds), creds.device_key()
        console.print(f"store: {_where(creds)}")
        shown = ("••••" + key[-4:] if len(key) >= 16 else "••••") if key else "[yellow]not stored[/]"
        console.print(f"device key: {shown}")
        table = Table("account", "login", "server", "password", title="MT5 logins")
        for name in accounts.names():
            if (login := accounts.get(name)) is not None:
                table.add_row(name, str(login.login), escape(login.server), "••••••••")
        console.print(table if table.row_count else "MT5 logins: none stored")


@credentials_app.command("clear")
def clear(
    account: Annotated[str | None, typer.Option(help="Remove only this MT5 login")] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation")] = False,
    store: StoreOpt = StoreKind.auto,
    file: FileOpt = None,
) -> None:
    """Remove every stored secret (or one MT5 login with --account)."""
    from aitrading.agent.credentials import CredentialError
    from aitrading.agent.terminals import Mt5Accounts

    with _one_line_errors():
        creds = _credentials(store, file)
        what = f"the MT5 login {account!r}" if account else "every MT5 login and the device key"
        if not yes:
            typer.confirm(f"Remove {what} from {_where(creds)}?", abort=True)
        if account is None:
            Mt5Accounts(creds).clear()
        elif not Mt5Accounts(creds).delete(account):
            raise CredentialError(f"no MT5 login is stored as {account!r}")
        console.print(f"removed {what}")


# -- run -------------------------------------------------------------------------------------------


@app.command()
def run(
    terminal: Annotated[
        list[str] | None,
        typer.Option(
            "--terminal",
            "-t",
            help="Repeatable: sim[:FEED], mt5[:ACCOUNT], mt5linux[:ACCOUNT]\\[@HOST:PORT] (default sim)",
        ),
    ] = None,
    symbols: Annotated[str | None, typer.Option(help="EURUSD,GBPUSD (default: Market Watch)")] = None,
    bridge_url: Annotated[str | None, typer.Option(help="Data bridge WebSocket URL")] = None,
    status: Annotated[bool, typer.Option(help="Serve the local status API (agent.status_port)")] = True,
    mt5_path: Annotated[str | None, typer.Option(help="terminal64.exe of the mt5 terminal")] = None,
    dev_key: Annotated[
        bool, typer.Option("--dev-key", help="Use security.dev_device_key (development)")
    ] = False,
    store: StoreOpt = StoreKind.auto,
    file: FileOpt = None,
    log_level: Annotated[str | None, typer.Option(help="Log level on stderr")] = None,
    execute: Annotated[
        bool, typer.Option(help="Execute the platform's trade commands on the terminals' accounts")
    ] = True,
    account_id: Annotated[
        list[str] | None,
        typer.Option(
            "--account-id", help="Repeatable FEED=ID: the account id of a terminal (default: its login)"
        ),
    ] = None,
    snapshot_interval: Annotated[
        float, typer.Option(min=0.1, help="Seconds between account snapshots sent to the platform")
    ] = 5.0,
    deals_window: Annotated[
        float, typer.Option(min=0.01, help="Hours of deals each account snapshot carries")
    ] = 24.0,
) -> None:
    """Stream the terminals' ticks to the data bridge and execute trade commands until Ctrl-C or SIGTERM."""
    from dataclasses import replace

    from aitrading.agent.executor import CRASH_ENV
    from aitrading.agent.service import Agent
    from aitrading.agent.terminals import Mt5Accounts, close_terminals, open_terminals, parse_terminal_spec
    from aitrading.common.clock import LiveClock

    # A test hook, not configuration: taken out before the config (which refuses unknown keys) loads.
    crash_after_order_send = os.environ.pop(CRASH_ENV, "") == "1"
    with _one_line_errors():
        cfg, env = _setup(log_level or "INFO")
        ids = _account_ids(account_id or [])
        specs = [parse_terminal_spec(t) for t in terminal or ["sim"]]
        wanted = tuple(s.strip() for s in (symbols or "").split(",") if s.strip())  # case-sensitive: EURUSDm
        # opened on first use, so a simulated-only development agent asks for no passphrase
        creds: Callable[[], CredentialStore] = functools.cache(lambda: _open_store(cfg, store, file, env))

        agent_cfg = cfg.resolved_agent()
        if bridge_url:
            agent_cfg = agent_cfg.model_copy(update={"bridge_url": bridge_url})
        clock = LiveClock()
        opened = open_terminals(
            specs, cfg, clock=clock, accounts=lambda: Mt5Accounts(creds()), symbols=wanted, mt5_path=mt5_path
        )
        try:
            for t in opened:
                shown = ", ".join(t.feed.symbols) or "its Market Watch symbols"
                login = f", login {t.login}" if t.login is not None else ""
                console.print(f"terminal {t.spec} → feed {escape(t.feed.feed)}{login}: {escape(shown)}")
            key = _device_key(cfg, creds, dev_key)
            unknown = sorted(set(ids) - {t.feed.feed for t in opened})
            if unknown:
                raise typer.BadParameter(f"--account-id names no terminal's feed: {', '.join(unknown)}")
            feeds = [replace(t.feed, account=ids.get(t.feed.feed), execute=execute) for t in opened]
            agent = Agent(
                agent_cfg,
                feeds,
                device_key=key,
                clock=clock,
                status_api=status,
                snapshot_interval_s=snapshot_interval,
                deals_window_s=deals_window * 3600,
                crash_after_order_send=crash_after_order_send,
            )
            where = f"; status http://127.0.0.1:{agent_cfg.status_port}/status" if status else ""
            banner = escape(f"agent {agent_cfg.device_id} → {agent_cfg.bridge_url}{where}; Ctrl-C stops")
            asyncio.run(_serve(agent, lambda: console.print(banner)))
        except OSError as exc:  # e.g. the status port is taken
            raise OperationalError(f"the agent cannot start: {exc}") from exc
        finally:
            close_terminals(opened)
        console.print("stopped cleanly")


def _account_ids(items: list[str]) -> dict[str, str]:
    """Parse `FEED=ID` pairs; a feed may be named once."""
    from aitrading.model.ids import account_id

    out: dict[str, str] = {}
    for item in items:
        feed, eq, ident = item.rpartition("=")
        if not eq or not feed or not ident:
            raise typer.BadParameter(f"--account-id {item!r} is not FEED=ID")
        if feed in out:
            raise typer.BadParameter(f"--account-id names feed {feed!r} twice")
        try:
            out[feed] = account_id(ident)
        except ValueError as exc:
            raise typer.BadParameter(f"--account-id {item!r}: {exc}") from None
    return out


def _device_key(cfg: PlatformConfig, creds: Callable[[], CredentialStore], dev_key: bool) -> str:
    """Return the stored device key; in development, fall back to `security.dev_device_key`."""
    development = cfg.mode == "development"
    if dev_key and not development:
        raise ConfigError("--dev-key works only in development mode")
    if not dev_key and (key := creds().device_key()):
        return key
    if not development:
        raise ConfigError(
            "no device key stored; run `aitrading agent credentials set-device-key` with the key the "
            "platform issued for this device"
        )
    if not dev_key:
        _say("[yellow]warning:[/] no device key stored; using the development key (security.dev_device_key)")
    return cfg.security.dev_device_key.get_secret_value()


async def _serve(agent: Agent, started: Callable[[], None]) -> None:
    """Run `agent` until SIGINT/SIGTERM, reporting a fault once; always stop it, flushing its buffer."""
    from aitrading.common.lifecycle import ComponentState

    stop = asyncio.Event()
    restore = _on_signals(asyncio.get_running_loop(), stop.set)
    try:
        await agent.start()
        started()
        reported = ""
        while not stop.is_set():
            with suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=1.0)
            if agent.state is ComponentState.FAULTED and agent.reason != reported:
                reported = agent.reason
                _say(f"[yellow]warning:[/] agent faulted: {escape(reported)}; ticks stay buffered")
    finally:
        await agent.stop()
        restore()


def _on_signals(loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> Callable[[], None]:
    """Call `callback` on SIGINT/SIGTERM (through `signal.signal` on Windows); return the undo."""
    sigs = (signal.SIGINT, signal.SIGTERM)
    old: dict[signal.Signals, Any] = {}
    try:
        for sig in sigs:
            loop.add_signal_handler(sig, callback)
    except (NotImplementedError, RuntimeError):  # Windows event loops, or not the main thread
        old = {sig: signal.signal(sig, lambda *_: loop.call_soon_threadsafe(callback)) for sig in sigs}

    def undo() -> None:
        for sig in sigs:
            if sig in old:
                signal.signal(sig, old[sig])
            else:
                loop.remove_signal_handler(sig)

    return undo


# -- status ----------------------------------------------------------------------------------------


@app.command("status")
def show_status(
    url: Annotated[
        str | None, typer.Option(help="Status API (default http://127.0.0.1:<status_port>)")
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the answer")] = 3.0,
) -> None:
    """Show the running agent's link, buffer, rates and acked sequence numbers (exit 1: down or faulted)."""
    import httpx
    from pydantic import ValidationError

    from aitrading.agent.status import AgentStatus

    with _one_line_errors():
        if url is None:
            url = f"http://127.0.0.1:{_setup()[0].agent.status_port}"
        try:
            response = httpx.get(url.rstrip("/") + "/status", timeout=timeout)
            response.raise_for_status()
            st = AgentStatus.model_validate(response.json())
        except (httpx.HTTPError, ValueError, ValidationError) as exc:
            why = escape(str(exc) or repr(exc))
            _say(f"[red]error:[/] no agent status at {escape(url)}: {why}; is `aitrading agent run` running?")
            raise typer.Exit(1) from None
    _print_status(st)
    if st.state == "faulted":
        raise typer.Exit(1)


def _print_status(st: AgentStatus) -> None:
    ex = st.execution
    link = {"connected": "green", "connecting": "yellow", "backoff": "yellow"}.get(st.link, "red")
    state = {"running": "green", "degraded": "yellow"}.get(st.state, "red")
    rows = {
        "state": f"[{state}]{st.state}[/]",
        "connection": f"[{link}]{st.link}[/] to {escape(st.bridge_url)}, {st.reconnects} reconnect(s)",
        "buffer": f"{st.buffered_batches:,} batch(es), {st.buffered_ticks:,} tick(s) not yet acknowledged",
        "read": f"{st.ticks_per_s_read:,.1f} ticks/s, {st.ticks_read:,} in all",
        "sent": f"{st.ticks_per_s_sent:,.1f} ticks/s, {st.ticks_sent:,} in all",
        "accounts": ", ".join(f"{escape(a)} ({escape(f)})" for a, f in ex.accounts.items())
        or "none (streams only)",
        "orders": f"{ex.executed:,} executed, {ex.recovered:,} recovered, {ex.failed:,} failed, "
        f"{ex.in_flight_total:,} unfinished",
        "last error": f"[red]{escape(st.last_error)}[/]" if st.last_error else "none",
    }
    agent = Table(title=f"Agent {escape(st.device_id)} ({st.version})", show_header=False)
    for name, value in rows.items():
        agent.add_row(f"[bold]{name}[/]", value)
    console.print(agent)
    sources = Table("source", "acked seq", "buffered batches", "symbols", title="Sources")
    for s in st.sources:
        sources.add_row(
            escape(s.src), str(s.acked_seq), str(s.buffered_batches), escape(", ".join(s.symbols))
        )
    console.print(sources)
    if ex.in_flight:
        orders = Table("client order id", "account", "state", "age", title="Unfinished orders")
        for o in ex.in_flight:
            orders.add_row(escape(o.client_order_id), escape(o.account), o.state, f"{o.age_s:,.1f} s")
        console.print(orders)
