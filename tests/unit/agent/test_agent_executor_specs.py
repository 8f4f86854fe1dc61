"""The agent reports its terminal's symbol specs (`symbol_info`) after connecting and when asked."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from aitrading.agent.executor import OrderExecutor, TradingAccount
from aitrading.agent.journal import OrderJournal
from aitrading.common.bus.codec import Message
from aitrading.common.clock import TestClock
from aitrading.model.ids import AccountId, TenantId
from aitrading.model.wire import SpecsRequest, SymbolSpecs
from aitrading.mt5 import SimulatedTerminal, SyntheticTickSource, default_specs

MONDAY_NS = int(datetime(2024, 3, 4, 7, 0, tzinfo=UTC).timestamp()) * 10**9
TENANT, ACCOUNT = TenantId("t1"), AccountId("sim-1")


@pytest.fixture
def terminal() -> Iterator[SimulatedTerminal]:
    clock = TestClock(MONDAY_NS)
    source = SyntheticTickSource(start_ms=MONDAY_NS // 10**6 - 60_000)
    term = SimulatedTerminal(clock, default_specs("EURUSD", "USDJPY"), source)
    assert term.initialize()
    yield term
    term.shutdown()


def executor(
    tmp_path: Path, terminal: SimulatedTerminal, out: list[Message], symbols: tuple[str, ...]
) -> OrderExecutor:
    async def send(msg: Message) -> bool:
        out.append(msg)
        return True

    return OrderExecutor(
        OrderJournal(tmp_path / "journal.sqlite"),
        [TradingAccount(ACCOUNT, "SIM", terminal, symbols)],
        clock=TestClock(MONDAY_NS),
        send=send,
    )


async def test_specs_go_out_after_connecting_as_the_terminal_states_them(
    tmp_path: Path, terminal: SimulatedTerminal
) -> None:
    out: list[Message] = []
    ex = executor(tmp_path, terminal, out, ("EURUSD", "USDJPY", "NOSUCH"))
    try:
        await ex.on_connected(TENANT)
        [specs] = [m for m in out if isinstance(m, SymbolSpecs)]
        assert (specs.tenant, specs.account) == (TENANT, ACCOUNT)
        expected = default_specs("EURUSD", "USDJPY")
        assert [s.name for s in specs.specs] == ["EURUSD", "USDJPY"]  # an unknown symbol is left out
        for spec in specs.specs:
            info = terminal.symbol_info(spec.name)
            assert info is not None
            want = expected[spec.name]
            assert spec.digits == info.digits == want.digits
            assert spec.contract_size == want.contract_size
            assert (spec.volume_min, spec.volume_max, spec.volume_step) == (
                want.volume_min,
                want.volume_max,
                want.volume_step,
            )
            assert (spec.currency_base, spec.currency_profit, spec.currency_margin) == (
                want.currency_base,
                want.currency_profit,
                want.currency_margin,
            )
            assert (spec.stops_level, spec.freeze_level) == (want.stops_level, want.freeze_level)
    finally:
        ex.close()
        ex.journal.close()


async def test_a_specs_request_is_answered_for_its_symbols_and_only_for_own_accounts(
    tmp_path: Path, terminal: SimulatedTerminal
) -> None:
    out: list[Message] = []
    ex = executor(tmp_path, terminal, out, ())  # no list: the terminal's visible symbols
    try:
        ex.tenant = TENANT
        assert await ex.on_specs_request(SpecsRequest(tenant=TENANT, account=ACCOUNT, symbols=["USDJPY"]))
        assert [s.name for s in out[-1].specs] == ["USDJPY"]  # type: ignore[attr-defined]
        assert await ex.on_specs_request(SpecsRequest(tenant=TENANT, account=ACCOUNT))
        assert sorted(s.name for s in out[-1].specs) == ["EURUSD", "USDJPY"]  # type: ignore[attr-defined]
        foreign = SpecsRequest(tenant=TenantId("t2"), account=ACCOUNT)
        assert not await ex.on_specs_request(foreign)
        assert not await ex.on_specs_request(SpecsRequest(tenant=TENANT, account=AccountId("other")))
        assert len(out) == 2
    finally:
        ex.close()
        ex.journal.close()
