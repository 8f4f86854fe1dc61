"""Terminal specs, named MT5 logins, and opening simulated and (faked) MetaTrader5 terminals."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from aitrading.agent.credentials import CredentialStore, MT5Login
from aitrading.agent.terminals import (
    Mt5Accounts,
    OpenedTerminal,
    TerminalOpenError,
    TerminalSpec,
    TerminalSpecError,
    open_terminals,
    parse_terminal_spec,
)
from aitrading.common.clock import LiveClock
from aitrading.common.config import PlatformConfig
from aitrading.common.errors import ConfigError
from aitrading.mt5.real import Mt5LinuxTerminal, Mt5PackageMissingError, RealTerminal
from aitrading.mt5.terminal import Terminal

LIVE = MT5Login(login=51234567, password="Tr4der!pass-Ω", server="ICMarketsSC-Live")
DEMO = MT5Login(login=7001, password="demo-pass", server="ICMarketsSC-Demo")


class MemorySecrets:
    """A secret backend in a dict (what the keyring or the encrypted file hold)."""

    kind = "memory"

    def __init__(self) -> None:
        self.items: dict[str, str] = {}

    def get(self, name: str) -> str | None:
        return self.items.get(name)

    def set(self, name: str, value: str) -> None:
        self.items[name] = value

    def delete(self, name: str) -> None:
        self.items.pop(name, None)


class FakeMt5:
    """The functions of the `MetaTrader5` module that opening a terminal calls."""

    def __init__(
        self, server: str = "ICMarketsSC-Live", *, login: int = 42, error: tuple[int, str] | None = None
    ) -> None:
        self.server, self.login, self.error = server, login, error
        self.init_calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
        self.selected: list[str] = []
        self.shut = False

    def initialize(self, *args: Any, **kwargs: Any) -> bool:
        self.init_calls.append((args, kwargs))
        self.login = kwargs.get("login", self.login)
        return self.error is None

    def last_error(self) -> tuple[int, str]:
        return self.error or (1, "Success")

    def account_info(self) -> Any:
        return SimpleNamespace(login=self.login, server=self.server)

    def symbol_select(self, symbol: str, enable: bool) -> bool:
        self.selected.append(symbol)
        return symbol != "NOPE"

    def shutdown(self) -> None:
        self.shut = True


def accounts_with(**logins: MT5Login) -> Mt5Accounts:
    accounts = Mt5Accounts(CredentialStore(MemorySecrets()))
    for name, login in logins.items():
        accounts.set(name, login)
    return accounts


def open_with(
    modules: dict[str, FakeMt5], specs: list[str], accounts: Mt5Accounts | None = None, **kw: Any
) -> list[OpenedTerminal]:
    def connector(spec: TerminalSpec) -> Terminal:
        module = modules[str(spec)]
        return RealTerminal(module) if spec.kind == "mt5" else Mt5LinuxTerminal(client=module)

    return open_terminals(
        [parse_terminal_spec(s) for s in specs],
        PlatformConfig(),
        clock=LiveClock(),
        accounts=(lambda: accounts) if accounts is not None else None,
        connector=connector,
        **kw,
    )


# -- the spec parser ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "spec"),
    [
        ("sim", TerminalSpec("sim")),
        ("sim:DEMO", TerminalSpec("sim", "DEMO")),
        ("mt5", TerminalSpec("mt5")),
        ("mt5:live", TerminalSpec("mt5", "live")),
        ("mt5:live@", TerminalSpec("mt5", "live")),
        ("MT5:live", TerminalSpec("mt5", "live")),
        ("mt5linux", TerminalSpec("mt5linux", "", "localhost", 18812)),
        ("mt5linux@127.0.0.1:18812", TerminalSpec("mt5linux", "", "127.0.0.1", 18812)),
        ("mt5linux:ic-live@wine-box:18813", TerminalSpec("mt5linux", "ic-live", "wine-box", 18813)),
        ("mt5linux@wine-box", TerminalSpec("mt5linux", "", "wine-box", 18812)),
        ("mt5linux@[::1]:18812", TerminalSpec("mt5linux", "", "::1", 18812)),
    ],
)
def test_terminal_specs_parse_kind_name_and_address(text: str, spec: TerminalSpec) -> None:
    assert parse_terminal_spec(text) == spec
    assert parse_terminal_spec(str(spec)) == spec  # the canonical text parses back


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "no kind"),
        ("mt4", "unknown kind 'mt4'"),
        ("mt5:", "empty name after ':'"),
        ("mt5:my account", "name 'my account'"),
        ("sim@127.0.0.1:18812", "only mt5linux takes @HOST:PORT"),
        ("mt5@127.0.0.1:18812", "mt5 talks to the terminal on this machine"),
        ("mt5linux@127.0.0.1:port", "port 'port' is not a number"),
        ("mt5linux@127.0.0.1:70000", "port '70000' is not a number from 1 to 65535"),
        ("mt5linux@::1:18812", "write an IPv6 address as [::1:18812]:PORT"),
        ("mt5linux@a@b:1", "host 'a@b' is not a host name"),
    ],
)
def test_bad_terminal_specs_are_rejected_with_the_reason_and_the_syntax(text: str, why: str) -> None:
    with pytest.raises(TerminalSpecError) as caught:
        parse_terminal_spec(text)
    message = str(caught.value)
    assert why in message
    assert "KIND[:NAME][@HOST:PORT]" in message
    assert "\n" not in message


def test_the_same_terminal_twice_or_two_mt5_terminals_are_refused() -> None:
    with pytest.raises(TerminalSpecError, match="terminal sim:A is given twice"):
        open_with({}, ["sim:A", "sim:A"])
    with pytest.raises(TerminalSpecError, match="one terminal per process"):
        open_with({}, ["mt5:live", "mt5:demo"])


# -- named MT5 logins -----------------------------------------------------------------------------------


def test_named_mt5_logins_round_trip_and_default_is_the_stores_own_login() -> None:
    accounts = accounts_with(live=LIVE, default=DEMO)
    assert accounts.names() == ["default", "live"]
    assert accounts.get("live") == LIVE
    assert accounts.store.mt5() == DEMO  # what CredentialStore.mt5() callers see
    assert accounts.get("nobody") is None
    assert accounts.delete("live") is True
    assert accounts.delete("live") is False
    assert accounts.names() == ["default"]


def test_clearing_accounts_removes_every_login_and_the_device_key() -> None:
    accounts = accounts_with(live=LIVE, default=DEMO)
    accounts.store.set_device_key("dk_0123456789abcdef")
    accounts.clear()
    assert accounts.names() == []
    assert accounts.store.device_key() is None
    assert accounts.store.backend.items == {}  # type: ignore[attr-defined]


# -- opening terminals ----------------------------------------------------------------------------------


def test_a_simulated_terminal_streams_the_configured_feed_or_its_name() -> None:
    opened = open_terminals(
        [parse_terminal_spec("sim"), parse_terminal_spec("sim:PAPER")],
        PlatformConfig(),
        clock=LiveClock(),
        symbols=("EURUSD",),
    )
    assert [(o.feed.feed, o.feed.symbols, o.feed.offload) for o in opened] == [
        ("SIM", ("EURUSD",), False),
        ("PAPER", ("EURUSD",), False),
    ]
    assert opened[1].terminal.account_info().server == "PAPER"  # type: ignore[union-attr]


def test_a_simulated_terminal_with_an_unknown_symbol_names_the_terminal() -> None:
    with pytest.raises(ConfigError, match=r"^terminal sim: simulator.symbols: no spec for FOO"):
        open_terminals([parse_terminal_spec("sim")], PlatformConfig(), clock=LiveClock(), symbols=("FOO",))


def test_an_mt5_terminal_logs_in_with_the_stored_account_and_streams_its_server() -> None:
    fake = FakeMt5("ICMarketsSC-Live")
    [opened] = open_with(
        {"mt5:live": fake},
        ["mt5:live"],
        accounts_with(live=LIVE),
        symbols=("EURUSD",),
        mt5_path="C:/MT5/t.exe",
    )
    assert fake.init_calls == [
        (("C:/MT5/t.exe",), {"login": LIVE.login, "password": LIVE.password, "server": LIVE.server})
    ]
    assert (opened.feed.feed, opened.login, opened.feed.offload) == ("ICMarketsSC-Live", LIVE.login, True)
    assert fake.selected == ["EURUSD"]
    opened.close()
    assert fake.shut


def test_an_unnamed_mt5_terminal_uses_the_default_login_or_attaches_to_the_logged_in_account() -> None:
    with_default, attached = FakeMt5("A-Server"), FakeMt5("B-Server", login=99)
    open_with({"mt5": with_default}, ["mt5"], accounts_with(default=DEMO))
    open_with({"mt5": attached}, ["mt5"], accounts_with())
    assert with_default.init_calls[0][1]["login"] == DEMO.login
    assert attached.init_calls == [((), {})]


def test_a_named_account_that_is_not_stored_is_a_clear_error() -> None:
    with pytest.raises(Exception, match="no MT5 login stored as 'live'; store it with `aitrading agent"):
        open_with({"mt5:live": FakeMt5()}, ["mt5:live"], accounts_with())


def test_a_failed_initialize_gives_one_line_with_last_error_and_closes_what_was_open() -> None:
    bad = FakeMt5(error=(-6, "Terminal: Authorization failed"))
    with pytest.raises(TerminalOpenError) as caught:
        open_with({"mt5:live": bad}, ["sim", "mt5:live"], accounts_with(live=LIVE))
    message = str(caught.value)
    assert message.startswith(
        "terminal mt5:live: initialize failed: -6 Terminal: Authorization failed; check"
    )
    assert "\n" not in message
    assert LIVE.password not in message
    assert bad.shut


def test_a_symbol_the_server_does_not_offer_is_named() -> None:
    fake = FakeMt5("Broker-Demo")
    with pytest.raises(TerminalOpenError, match="Broker-Demo has no symbol NOPE"):
        open_with({"mt5": fake}, ["mt5"], accounts_with(), symbols=("EURUSD", "NOPE"))
    assert fake.shut


def test_two_terminals_on_the_same_broker_server_are_refused() -> None:
    modules = {"mt5linux@a:1": FakeMt5("Broker-Demo"), "mt5linux@b:1": FakeMt5("Broker-Demo")}
    with pytest.raises(TerminalSpecError, match="both stream feed 'Broker-Demo'"):
        open_with(modules, ["mt5linux@a:1", "mt5linux@b:1"], accounts_with())
    assert all(m.shut for m in modules.values())


def test_several_mt5linux_terminals_on_different_servers_stream_side_by_side() -> None:
    modules = {"mt5linux@a:1": FakeMt5("Broker-Demo"), "mt5linux:live@b:1": FakeMt5("Broker-Live")}
    opened = open_with(modules, list(modules), accounts_with(live=LIVE))
    assert [o.feed.feed for o in opened] == ["Broker-Demo", "Broker-Live"]


def test_an_unreachable_mt5linux_server_is_one_line() -> None:
    def refuse(spec: TerminalSpec) -> Terminal:
        raise ConnectionRefusedError(111, "Connection refused")

    spec = parse_terminal_spec("mt5linux@127.0.0.1:18812")
    with pytest.raises(
        TerminalOpenError, match=r"cannot reach mt5linux at 127.0.0.1:18812 .*Connection refused"
    ):
        open_terminals([spec], PlatformConfig(), clock=LiveClock(), connector=refuse)


@pytest.mark.skipif(importlib.util.find_spec("MetaTrader5") is not None, reason="MetaTrader5 is installed")
def test_an_mt5_terminal_without_the_metatrader5_package_says_how_to_get_one(tmp_path: Path) -> None:
    with pytest.raises(Mt5PackageMissingError) as caught:
        open_terminals([parse_terminal_spec("mt5")], PlatformConfig(), clock=LiveClock())
    message = str(caught.value)
    assert message.startswith("terminal mt5: the MetaTrader5 package is not installed")
    assert "--terminal mt5linux@HOST:PORT" in message
