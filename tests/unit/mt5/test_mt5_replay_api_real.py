"""Replayed ticks, the module-level API, the real-terminal adapters and the date/timeframe helpers."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import numpy as np
import pytest
from mt5_helpers import (
    MONDAY,
    MONDAY_MS,
    clock_at,
    model_tick,
    ms_datetime,
    must,
    replay_terminal,
    synthetic_terminal,
)

import aitrading.mt5 as mt5
from aitrading.common.errors import BadInputError, OperationalError
from aitrading.mt5 import ReplayTickSource, default_specs
from aitrading.mt5._internal import bucket_start, to_ms

# --- replay ------------------------------------------------------------------------------------------------


def test_replay_releases_ticks_as_the_clock_passes_them() -> None:
    ticks = [model_tick(MONDAY_MS + offset) for offset in (0, 0, 5, 1000, 1000, 60_000)]
    clock = clock_at(MONDAY_MS - 10)
    terminal = replay_terminal(clock, ticks)
    assert terminal.symbol_info_tick("EURUSD") is None
    assert terminal.last_error()[0] == mt5.RES_E_NOT_FOUND
    released = []
    for step_ms in (10, 4, 1, 994, 1, 58_999, 1):
        clock.advance(ns=step_ms * 1_000_000)
        rows = must(terminal.copy_ticks_from("EURUSD", MONDAY, 100, mt5.COPY_TICKS_ALL))
        assert (rows["time_msc"] <= clock.now_ms()).all()
        released.append(len(rows))
    assert released == [2, 2, 3, 3, 5, 5, 6]
    assert must(terminal.symbol_info_tick("EURUSD")).time_msc == MONDAY_MS + 60_000


def test_replay_skips_symbols_the_terminal_does_not_list() -> None:
    source = ReplayTickSource([model_tick(MONDAY_MS), model_tick(MONDAY_MS + 1, symbol="BTCUSD")])
    released = source.advance(MONDAY_MS + 10, default_specs("EURUSD"))
    assert [t.symbol for t in released["EURUSD"]] == ["EURUSD"]
    assert source.skipped == 1
    assert source.start_ms == MONDAY_MS


def test_replay_refuses_ticks_out_of_time_order() -> None:
    source = ReplayTickSource([model_tick(MONDAY_MS + 5), model_tick(MONDAY_MS + 4, symbol="GBPUSD")])
    with pytest.raises(BadInputError, match="time order"):
        source.advance(MONDAY_MS + 10, default_specs("EURUSD", "GBPUSD"))


def test_replay_is_lazy_over_its_iterable() -> None:
    pulled: list[int] = []

    def ticks() -> Any:
        for i in range(1000):
            pulled.append(i)
            yield model_tick(MONDAY_MS + i * 1000)

    source = ReplayTickSource(ticks())
    source.advance(MONDAY_MS + 2500, default_specs("EURUSD"))
    assert len(pulled) == 4  # three released plus one looked ahead


# --- module-level API --------------------------------------------------------------------------------------


@pytest.fixture
def restore_selection() -> Any:
    previous = mt5.use(None)
    yield
    mt5.use(previous)


@pytest.mark.usefixtures("restore_selection")
def test_module_functions_read_like_the_package_once_a_terminal_is_selected() -> None:
    assert mt5.initialize() is False
    assert mt5.copy_ticks_from("EURUSD", MONDAY, 10, mt5.COPY_TICKS_ALL) is None
    code, message = mt5.last_error()
    assert code == mt5.RES_E_INTERNAL_FAIL_CONNECT
    assert "use(terminal)" in message

    clock = clock_at(MONDAY_MS + 3_600_000)
    terminal = synthetic_terminal(clock)
    terminal.shutdown()
    assert mt5.use(terminal) is None
    assert mt5.current() is terminal
    assert mt5.initialize(login=1234, server="SIM") is True
    assert must(mt5.account_info()).login == 1234
    assert must(mt5.version())[0] == 500
    assert must(mt5.terminal_info()).connected is True
    assert mt5.symbols_total() == 1
    assert mt5.symbol_select("EURUSD") is True
    assert must(mt5.symbol_info("EURUSD")).name == "EURUSD"
    ticks = must(mt5.copy_ticks_from("EURUSD", MONDAY, 10, mt5.COPY_TICKS_ALL))
    assert len(ticks) == 10
    assert ticks.dtype == mt5.TICK_DTYPE
    assert must(mt5.symbol_info_tick("EURUSD")).time_msc <= clock.now_ms()
    assert len(must(mt5.copy_ticks_range("EURUSD", MONDAY, clock.utcnow(), mt5.COPY_TICKS_ALL))) > 10
    assert len(must(mt5.copy_rates_from_pos("EURUSD", mt5.TIMEFRAME_M5, 0, 3))) == 3
    assert len(must(mt5.copy_rates_from("EURUSD", mt5.TIMEFRAME_M5, clock.utcnow(), 3))) == 3
    assert len(must(mt5.copy_rates_range("EURUSD", mt5.TIMEFRAME_H1, MONDAY, clock.utcnow()))) == 1
    assert must(mt5.order_send({"action": mt5.TRADE_ACTION_DEAL})).retcode == mt5.TRADE_RETCODE_INVALID
    assert mt5.order_send({"action": mt5.TRADE_ACTION_DEAL, "volume": "1"}) is None
    assert mt5.last_error() == (mt5.RES_E_INVALID_PARAMS, 'Invalid "volume" argument')
    sent = must(
        mt5.order_send({"action": mt5.TRADE_ACTION_DEAL, "symbol": "EURUSD", "volume": 0.1, "type": 0})
    )
    assert sent.retcode == mt5.TRADE_RETCODE_DONE
    assert [p.ticket for p in must(mt5.positions_get(symbol="EURUSD"))] == [sent.order]
    assert [d.order for d in must(mt5.history_deals_get(MONDAY, clock.utcnow()))] == [sent.order]
    mt5.shutdown()
    assert mt5.symbol_info_tick("EURUSD") is None
    assert mt5.last_error()[0] == mt5.RES_E_INTERNAL_FAIL_CONNECT


def test_every_terminal_kind_satisfies_the_protocol() -> None:
    # The annotations make mypy check the signatures; isinstance checks the names at run time.
    simulated: mt5.Terminal = synthetic_terminal(clock_at())
    real: mt5.Terminal = mt5.RealTerminal(module=_FakePackage())
    wine: mt5.Terminal = mt5.Mt5LinuxTerminal(client=_FakePackage())
    for terminal in (simulated, real, wine):
        assert isinstance(terminal, mt5.Terminal)


# --- real adapters -----------------------------------------------------------------------------------------


class _FakePackage:
    """Records calls the way the MetaTrader5 module would receive them."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def __getattr__(self, name: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append((name, args, kwargs))
            return {"last_error": (1, "Success"), "version": (500, 4410, "05 Jun 2024")}.get(name, True)

        return call


def test_real_terminal_forwards_only_the_arguments_given() -> None:
    package = _FakePackage()
    terminal = mt5.RealTerminal(module=package)
    assert terminal.initialize(login=42, password="pw") is True
    assert terminal.initialize("C:/MT5/terminal64.exe") is True
    terminal.positions_get(symbol="EURUSD")
    terminal.history_deals_get(position=7)
    terminal.copy_ticks_from("EURUSD", MONDAY, 5, mt5.COPY_TICKS_ALL)
    assert terminal.last_error() == (1, "Success")
    assert must(terminal.version()) == (500, 4410, "05 Jun 2024")
    assert package.calls[:5] == [
        ("initialize", (), {"login": 42, "password": "pw"}),
        ("initialize", ("C:/MT5/terminal64.exe",), {}),
        ("positions_get", (), {"symbol": "EURUSD"}),
        ("history_deals_get", (), {"position": 7}),
        ("copy_ticks_from", ("EURUSD", MONDAY, 5, -1), {}),
    ]


def _installed(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


@pytest.mark.skipif(_installed("MetaTrader5"), reason="the MetaTrader5 package is installed here")
def test_real_terminal_without_the_package_says_how_to_get_it() -> None:
    with pytest.raises(mt5.Mt5PackageMissingError, match="MetaTrader5") as caught:
        mt5.RealTerminal()
    assert isinstance(caught.value, OperationalError)
    assert "Windows" in str(caught.value)


@pytest.mark.skipif(_installed("mt5linux"), reason="mt5linux is installed here")
def test_mt5linux_terminal_without_the_package_says_how_to_get_it() -> None:
    with pytest.raises(mt5.Mt5PackageMissingError, match="mt5linux"):
        mt5.Mt5LinuxTerminal("127.0.0.1", 18812)


def test_importing_the_package_loads_no_real_terminal_code() -> None:
    modules = ("MetaTrader5", "mt5linux", "rpyc", "aitrading.mt5.real")
    code = f"import sys, aitrading.mt5; print(sorted(m for m in {modules!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# --- helpers -----------------------------------------------------------------------------------------------


def test_dates_convert_like_the_package_keeping_milliseconds() -> None:
    assert to_ms(ms_datetime(MONDAY_MS + 649)) == MONDAY_MS + 649
    assert to_ms(datetime(2024, 3, 4, 6, 0, 0, 649_999)) == MONDAY_MS + 649  # naive is UTC; floor to the ms
    assert to_ms(datetime(2024, 3, 4, 8, 0, tzinfo=timezone(timedelta(hours=2)))) == MONDAY_MS
    assert to_ms(MONDAY_MS // 1000) == MONDAY_MS
    assert to_ms(np.int64(MONDAY_MS // 1000)) == MONDAY_MS
    assert to_ms(MONDAY_MS / 1000 + 0.25) == MONDAY_MS + 250
    for bad in (True, "2024-03-04", float("nan"), None):
        with pytest.raises(TypeError):
            to_ms(bad)


def test_bars_align_to_midnight_sunday_and_the_first_of_the_month() -> None:
    wednesday = int(datetime(2024, 2, 28, 13, 47, 5, tzinfo=UTC).timestamp())
    times = np.array([wednesday], dtype=np.int64)

    def opened(timeframe: int) -> datetime:
        return datetime.fromtimestamp(int(bucket_start(times, timeframe)[0]), tz=UTC)

    assert opened(mt5.TIMEFRAME_M15) == datetime(2024, 2, 28, 13, 45, tzinfo=UTC)
    assert opened(mt5.TIMEFRAME_H4) == datetime(2024, 2, 28, 12, tzinfo=UTC)
    assert opened(mt5.TIMEFRAME_H12) == datetime(2024, 2, 28, 12, tzinfo=UTC)
    assert opened(mt5.TIMEFRAME_D1) == datetime(2024, 2, 28, tzinfo=UTC)
    assert opened(mt5.TIMEFRAME_W1) == datetime(2024, 2, 25, tzinfo=UTC)  # a Sunday
    assert opened(mt5.TIMEFRAME_MN1) == datetime(2024, 2, 1, tzinfo=UTC)
