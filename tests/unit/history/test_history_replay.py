"""A history file replayed as the simulated terminal's live feed."""

from __future__ import annotations

from pathlib import Path

import pytest

from aitrading.agent.simulated import build_simulated_terminal
from aitrading.common.clock import TestClock
from aitrading.common.config import load_config
from aitrading.common.errors import ConfigError
from aitrading.history.replay import iter_ticks, paced


def test_replayed_file_reaches_the_terminal_paced_into_the_present_with_exact_prices(
    shared_data: Path,
) -> None:
    path = shared_data / "truefx_USDJPY_ticks_20130101.csv"
    recorded = list(iter_ticks(path, "truefx", feed="SIM", symbol="USDJPY"))
    assert len(recorded) == 1_000
    cfg = load_config(
        simulator={
            "replay_file": str(path),
            "replay_format": "truefx",
            "replay_symbol": "USDJPY",
            "replay_speed": 60.0,
        },
    )
    clock = TestClock()
    start = clock.now_ms() + 1_000
    terminal = build_simulated_terminal(cfg, clock)
    span_ms = recorded[-1].time_msc - recorded[0].time_msc
    clock.advance((1_000 + span_ms / 60) / 1000 + 1)
    rows = terminal.copy_ticks_range("USDJPY", start // 1000 - 1, clock.now_ms() // 1000 + 1, -1)
    assert rows is not None
    assert len(rows) == 1_000
    assert rows["time_msc"][0] == start
    assert rows["time_msc"][-1] == start + int(span_ms / 60)
    assert [round(b * 1000) for b in rows["bid"][:5]] == [t.bid // 1_000_000 for t in recorded[:5]]


def test_paced_keeps_order_and_spacing_divided_by_speed() -> None:
    from aitrading.model.market import Tick

    ticks = [Tick(feed="F", symbol="S", time_msc=t, bid=1, ask=2) for t in (100, 100, 160, 400)]
    assert [t.time_msc for t in paced(ticks, 10_000, speed=2)] == [10_000, 10_000, 10_030, 10_150]
    with pytest.raises(ValueError, match="positive"):
        list(paced(ticks, 0, speed=0))


def test_replay_without_its_symbol_or_with_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="replay_symbol is required"):
        load_config(simulator={"replay_file": str(tmp_path / "x.csv")})
    cfg = load_config(simulator={"replay_file": str(tmp_path / "nope.csv"), "replay_symbol": "EURUSD"})
    with pytest.raises(ConfigError, match="does not exist"):
        build_simulated_terminal(cfg, TestClock())
