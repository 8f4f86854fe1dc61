"""The terminals one agent process streams: `--terminal` specs, named MT5 logins, opening and closing.

A spec is `KIND[:NAME][@HOST:PORT]`:

- `sim[:FEED]`: a simulated terminal over the synthetic feed of `config.simulator` (FEED defaults to
  `simulator.feed`).
- `mt5[:ACCOUNT]`: the `MetaTrader5` package and the terminal on this Windows machine. The package drives
  one terminal per process, so one agent process takes at most one `mt5` terminal.
- `mt5linux[:ACCOUNT][@HOST:PORT]`: a terminal under Wine reached through mt5linux (RPyC), by default at
  localhost:18812. Each mt5linux server is its own terminal, so several can be streamed at once.

ACCOUNT names a login stored with `aitrading agent credentials set-mt5 --account ACCOUNT`; the login and
password come only from the credential store, never from the command line or the environment. Without
ACCOUNT the `default` login is used when one is stored, else the agent attaches to whatever account the
terminal is logged in to. A terminal's feed (market data goes to `md.tick.<feed>.<symbol>`) is the broker
server the terminal reports in `account_info().server`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from aitrading.agent.credentials import CredentialError, CredentialStore, MT5Login
from aitrading.common.errors import AITradingError, BadInputError, ConfigError, OperationalError

if TYPE_CHECKING:
    from aitrading.agent.service import TerminalFeed
    from aitrading.common.clock import Clock
    from aitrading.common.config import PlatformConfig
    from aitrading.mt5.terminal import Terminal
    from aitrading.mt5.types import AccountInfo

__all__ = [
    "DEFAULT_ACCOUNT",
    "Mt5Accounts",
    "OpenedTerminal",
    "TerminalOpenError",
    "TerminalSpec",
    "TerminalSpecError",
    "check_specs",
    "close_terminals",
    "connect",
    "open_terminals",
    "parse_terminal_spec",
]

TerminalKind = Literal["sim", "mt5", "mt5linux"]
KINDS: tuple[TerminalKind, ...] = ("sim", "mt5", "mt5linux")
DEFAULT_ACCOUNT = "default"
MT5LINUX_HOST, MT5LINUX_PORT = "localhost", 18812
SPEC_SYNTAX = "KIND[:NAME][@HOST:PORT], KIND one of sim, mt5, mt5linux"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_ACCOUNT_ENTRY = "mt5-account:"
_ACCOUNT_INDEX = "mt5-accounts"
_HINTS = {  # MT5 `RES_E_*` codes of initialize() → what to do
    -6: "check the stored login with `aitrading agent credentials show`",
    -10003: "is the terminal installed? give its terminal64.exe with --mt5-path",
    -10004: "is the terminal running and allowed to accept connections?",
    -10005: "the terminal did not answer in time; is it starting or busy?",
}
_MISSING = {
    "mt5": "the MetaTrader5 package is not installed; it exists only for Windows: `pip install MetaTrader5` "
    "on the machine with the terminal, or use --terminal mt5linux@HOST:PORT (Wine) or --terminal sim",
    "mt5linux": "the mt5linux package is not installed: `pip install mt5linux` here, and run "
    "`python -m mt5linux` in the Wine Python that has the MetaTrader5 package",
}


class TerminalSpecError(BadInputError):
    """A `--terminal` spec is malformed or the specs conflict."""


class TerminalOpenError(OperationalError):
    """A terminal could not be opened; the message names the terminal and the MT5 error."""


@dataclass(frozen=True)
class TerminalSpec:
    """One terminal to stream: its kind, its account (or, for `sim`, feed) name and its address."""

    kind: TerminalKind
    name: str = ""
    host: str = ""
    port: int = 0

    def __str__(self) -> str:
        text = f"{self.kind}:{self.name}" if self.name else self.kind
        if self.kind == "mt5linux":
            host = f"[{self.host}]" if ":" in self.host else self.host
            text += f"@{host}:{self.port}"
        return text


def parse_terminal_spec(text: str) -> TerminalSpec:
    """Return the spec of `KIND[:NAME][@HOST:PORT]`; raise `TerminalSpecError` saying what is wrong."""
    raw = text.strip()
    head, _, address = raw.partition("@")
    kind, colon, name = head.partition(":")
    kind = kind.strip().lower()

    def bad(why: str) -> TerminalSpecError:
        return TerminalSpecError(f"terminal {text!r}: {why} (expected {SPEC_SYNTAX})")

    if kind not in KINDS:
        raise bad(f"unknown kind {kind!r}" if kind else "no kind")
    if colon and not name:
        raise bad("empty name after ':'")
    if name and not _NAME.fullmatch(name):
        raise bad(f"name {name!r} must be letters, digits, '_', '.' or '-' (at most 64)")
    if kind != "mt5linux":
        if address:
            hint = "; mt5 talks to the terminal on this machine" if kind == "mt5" else ""
            raise bad(f"only mt5linux takes @HOST:PORT{hint}")
        return TerminalSpec("sim" if kind == "sim" else "mt5", name)
    host, port = _address(address, bad)
    return TerminalSpec("mt5linux", name, host, port)


def _address(address: str, bad: Callable[[str], TerminalSpecError]) -> tuple[str, int]:
    if not address:
        return MT5LINUX_HOST, MT5LINUX_PORT
    if address.startswith("["):  # [IPv6]:port
        host, _, rest = address[1:].partition("]")
        if rest and not rest.startswith(":"):
            raise bad(f"address {address!r} is not [HOST]:PORT")
        port_text = rest[1:]
    elif address.count(":") > 1:
        raise bad(f"write an IPv6 address as [{address}]:PORT")
    else:
        host, _, port_text = address.partition(":")
    host = host or MT5LINUX_HOST
    if any(ch.isspace() or ch in "/@[]" for ch in host):
        raise bad(f"host {host!r} is not a host name or IP address")
    if not port_text:
        return host, MT5LINUX_PORT
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise bad(f"port {port_text!r} is not a number from 1 to 65535")
    return host, int(port_text)


def check_specs(specs: Sequence[TerminalSpec]) -> None:
    """Refuse spec lists one process cannot serve: duplicates, or more than one `mt5` terminal."""
    seen: set[TerminalSpec] = set()
    for spec in specs:
        if spec in seen:
            raise TerminalSpecError(f"terminal {spec} is given twice")
        seen.add(spec)
    if sum(s.kind == "mt5" for s in specs) > 1:
        raise TerminalSpecError(
            "the MetaTrader5 package drives one terminal per process: run one agent per mt5 terminal, "
            "or reach the others through mt5linux"
        )


# -- named MT5 logins ----------------------------------------------------------------------------------


class Mt5Accounts:
    """Named MT5 logins in a `CredentialStore`.

    `default` is the store's own MT5 login (`CredentialStore.mt5()`); other names are entries of the same
    backend, listed in an index entry because OS keyrings cannot enumerate what they hold.
    """

    def __init__(self, store: CredentialStore) -> None:
        self.store = store

    def names(self) -> list[str]:
        """Return the stored account names, `default` first."""
        first = [DEFAULT_ACCOUNT] if self.store.mt5() is not None else []
        return first + self._index()

    def get(self, name: str) -> MT5Login | None:
        """Return the login stored as `name`, or `None`."""
        if name == DEFAULT_ACCOUNT:
            return self.store.mt5()
        raw = self.store.backend.get(_ACCOUNT_ENTRY + name)
        if raw is None:
            return None
        data = json.loads(raw)
        return MT5Login(login=int(data["login"]), password=str(data["password"]), server=str(data["server"]))

    def set(self, name: str, login: MT5Login) -> None:
        """Store `login` as account `name` (replacing any login of that name)."""
        if not _NAME.fullmatch(name):
            raise CredentialError(f"account name {name!r} must be letters, digits, '_', '.' or '-'")
        if login.login <= 0 or not login.server or not login.password:
            raise CredentialError("an MT5 login needs a positive login number, a server and a password")
        if name == DEFAULT_ACCOUNT:
            self.store.set_mt5(login)
            return
        value = {"login": int(login.login), "password": login.password, "server": login.server}
        self.store.backend.set(_ACCOUNT_ENTRY + name, json.dumps(value))
        index = self._index()
        if name not in index:
            self.store.backend.set(_ACCOUNT_INDEX, json.dumps([*index, name]))

    def delete(self, name: str) -> bool:
        """Remove account `name`; return whether it was stored."""
        if self.get(name) is None:
            return False
        if name == DEFAULT_ACCOUNT:
            self.store.backend.delete("mt5")  # CredentialStore's own entry; it has no single delete
            return True
        self.store.backend.delete(_ACCOUNT_ENTRY + name)
        self.store.backend.set(_ACCOUNT_INDEX, json.dumps([n for n in self._index() if n != name]))
        return True

    def clear(self) -> None:
        """Remove every MT5 login and the device key."""
        for name in self._index():
            self.store.backend.delete(_ACCOUNT_ENTRY + name)
        self.store.backend.delete(_ACCOUNT_INDEX)
        self.store.clear()

    def _index(self) -> list[str]:
        raw = self.store.backend.get(_ACCOUNT_INDEX)
        return [str(n) for n in json.loads(raw)] if raw else []


# -- opening terminals ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class OpenedTerminal:
    """A connected terminal, the feed the agent streams from it, and the login it uses (if any)."""

    spec: TerminalSpec
    feed: TerminalFeed
    terminal: Terminal
    login: int | None = None

    def close(self) -> None:
        """Disconnect from the terminal; a terminal that is already gone is not an error."""
        with suppress(Exception):  # shutting down a dead RPyC link or terminal must not mask the stop
            self.terminal.shutdown()


def connect(spec: TerminalSpec) -> Terminal:
    """Return the unconnected terminal object of an `mt5` or `mt5linux` spec (mt5linux dials RPyC here)."""
    from aitrading.mt5.real import Mt5LinuxTerminal, RealTerminal

    return RealTerminal() if spec.kind == "mt5" else Mt5LinuxTerminal(spec.host, spec.port)


def open_terminals(
    specs: Sequence[TerminalSpec],
    config: PlatformConfig,
    *,
    clock: Clock,
    accounts: Callable[[], Mt5Accounts] | None = None,
    symbols: Sequence[str] = (),
    mt5_path: str | None = None,
    connector: Callable[[TerminalSpec], Terminal] = connect,
) -> list[OpenedTerminal]:
    """Connect every terminal of `specs`; on any failure close those already open and raise.

    `accounts` opens the credential store on first use, so a simulated-only agent never asks for a
    passphrase. `symbols` (empty: each terminal's Market Watch, or `simulator.symbols` for `sim`) applies
    to every terminal. `connector` makes the terminal objects (tests pass fakes of the MetaTrader5 module).
    """
    check_specs(specs)
    opened: list[OpenedTerminal] = []
    try:
        for spec in specs:
            if spec.kind == "sim":
                opened.append(_open_sim(spec, config, clock, symbols))
            else:
                login = _login_for(spec, accounts)
                opened.append(_open_mt5(spec, connector, login, symbols, mt5_path))
            _check_feed_unique(opened)
    except BaseException:
        close_terminals(opened)
        raise
    return opened


def close_terminals(opened: Sequence[OpenedTerminal]) -> None:
    """Disconnect from every terminal."""
    for item in opened:
        item.close()


def _open_sim(
    spec: TerminalSpec, config: PlatformConfig, clock: Clock, symbols: Sequence[str]
) -> OpenedTerminal:
    from aitrading.agent.service import TerminalFeed
    from aitrading.agent.simulated import build_simulated_terminal

    update: dict[str, Any] = {"feed": spec.name} if spec.name else {}
    if symbols:
        update["symbols"] = tuple(symbols)
    cfg = config.model_copy(update={"simulator": config.simulator.model_copy(update=update)})
    try:
        terminal = build_simulated_terminal(cfg, clock)
    except ConfigError as exc:  # an unknown symbol: name the terminal
        raise ConfigError(f"terminal {spec}: {exc}") from None
    feed = TerminalFeed(cfg.simulator.feed, terminal, symbols=cfg.simulator.symbols, offload=False)
    return OpenedTerminal(spec, feed, terminal)


def _login_for(spec: TerminalSpec, accounts: Callable[[], Mt5Accounts] | None) -> MT5Login | None:
    name = spec.name or DEFAULT_ACCOUNT
    if accounts is None:
        if spec.name:
            raise CredentialError(f"terminal {spec}: no credential store to read account {name!r} from")
        return None
    login = accounts().get(name)
    if login is None and spec.name:
        raise CredentialError(
            f"terminal {spec}: no MT5 login stored as {name!r}; store it with "
            f"`aitrading agent credentials set-mt5 --account {name} --login N --server S`"
        )
    return login


def _open_mt5(
    spec: TerminalSpec,
    connector: Callable[[TerminalSpec], Terminal],
    login: MT5Login | None,
    symbols: Sequence[str],
    mt5_path: str | None,
) -> OpenedTerminal:
    from aitrading.agent.service import TerminalFeed
    from aitrading.mt5.real import Mt5PackageMissingError

    try:
        terminal = connector(spec)
    except Mt5PackageMissingError as exc:
        raise Mt5PackageMissingError(f"terminal {spec}: {_MISSING[spec.kind]}") from exc
    except Exception as exc:  # RPyC raises OSError, EOFError and its own types: one line whatever it is
        raise TerminalOpenError(
            f"terminal {spec}: cannot reach mt5linux at {spec.host}:{spec.port} ({exc!r}); "
            "is `python -m mt5linux` running in the Wine Python?"
        ) from exc
    try:
        info = _log_in(spec, terminal, login, symbols, mt5_path if spec.kind == "mt5" else None)
    except Exception as exc:
        with suppress(Exception):
            terminal.shutdown()
        if isinstance(exc, AITradingError):
            raise
        # a remote terminal can fail in any way mid-call: name it in one line
        raise TerminalOpenError(f"terminal {spec}: {type(exc).__name__}: {exc}") from exc
    feed = TerminalFeed(str(info.server), terminal, symbols=tuple(symbols), offload=True)
    return OpenedTerminal(spec, feed, terminal, int(info.login))


def _log_in(
    spec: TerminalSpec, terminal: Terminal, login: MT5Login | None, symbols: Sequence[str], path: str | None
) -> AccountInfo:
    """Initialize `terminal` (logging in when `login` is given), select `symbols`; return account_info."""
    if login is None:
        ok = terminal.initialize(path)
    else:
        ok = terminal.initialize(path, login=login.login, password=login.password, server=login.server)
    if not ok:
        code, text = terminal.last_error()
        hint = f"; {_HINTS[code]}" if code in _HINTS else ""
        raise TerminalOpenError(f"terminal {spec}: initialize failed: {code} {text}{hint}")
    info = terminal.account_info()
    if info is None or not info.server:
        code, text = terminal.last_error()
        raise TerminalOpenError(
            f"terminal {spec}: no account is logged in ({code} {text}); log in in the terminal or "
            "store a login with `aitrading agent credentials set-mt5`"
        )
    for symbol in symbols:
        if not terminal.symbol_select(symbol, True):
            code, text = terminal.last_error()
            raise TerminalOpenError(f"terminal {spec}: {info.server} has no symbol {symbol} ({code} {text})")
    return info


def _check_feed_unique(opened: Sequence[OpenedTerminal]) -> None:
    last = opened[-1]
    for other in opened[:-1]:
        if other.feed.feed == last.feed.feed:
            raise TerminalSpecError(
                f"terminals {other.spec} and {last.spec} both stream feed {last.feed.feed!r}; market data "
                "is per broker server, so stream each server once"
            )
