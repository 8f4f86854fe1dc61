"""`aitrading agent credentials | run | status` through Typer's runner."""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from typer.testing import CliRunner, Result

from aitrading.agent.cli import PASSPHRASE_ENV, app
from aitrading.agent.status import AgentStatus, SourceStatus, StatusServer, create_status_app

PASSWORD = "Tr4der!pass-Ω"
DEVICE_KEY = "dk_live_0123456789abcdef0123456789abcdef"
PASSPHRASE = "correct horse battery staple"


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """The commands point logging at the runner's stderr, which closes after each run: undo that."""
    saved, root = structlog.get_config(), logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    structlog.configure(**saved)
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def creds_file(tmp_path: Path) -> list[str]:
    """Store options that never touch the developer's OS keyring."""
    return ["--store", "file", "--file", str(tmp_path / "agent-credentials.bin")]


def invoke(
    runner: CliRunner, args: list[str], stdin: str | None = None, passphrase: str | None = PASSPHRASE
) -> Result:
    env = {PASSPHRASE_ENV: passphrase} if passphrase is not None else {}
    return runner.invoke(app, args, input=stdin, env=env)


# -- credentials ----------------------------------------------------------------------------------------


def test_credentials_round_trip_through_the_encrypted_file(
    runner: CliRunner, creds_file: list[str], tmp_path: Path
) -> None:
    set_mt5 = ["credentials", "set-mt5", "--account", "live", "--login", "51234567"]
    stored = invoke(
        runner, [*set_mt5, "--server", "ICMarketsSC-Demo", "--password-stdin", *creds_file], PASSWORD + "\n"
    )
    assert stored.exit_code == 0, stored.output
    assert "stored MT5 login 51234567 on ICMarketsSC-Demo as account 'live'" in stored.stdout
    key = invoke(runner, ["credentials", "set-device-key", "--key-stdin", *creds_file], DEVICE_KEY + "\n")
    assert key.exit_code == 0, key.output

    blob = (tmp_path / "agent-credentials.bin").read_bytes()
    assert PASSWORD.encode() not in blob
    assert DEVICE_KEY.encode() not in blob

    shown = invoke(runner, ["credentials", "show", *creds_file])
    assert shown.exit_code == 0, shown.output
    assert "51234567" in shown.stdout
    assert "ICMarketsSC-Demo" in shown.stdout
    assert "live" in shown.stdout
    assert "device key: ••••cdef" in shown.stdout
    assert PASSWORD not in shown.stdout
    assert DEVICE_KEY not in shown.stdout

    cleared = invoke(runner, ["credentials", "clear", "--yes", *creds_file])
    assert cleared.exit_code == 0, cleared.output
    after = invoke(runner, ["credentials", "show", *creds_file])
    assert "device key: not stored" in after.stdout
    assert "MT5 logins: none stored" in after.stdout


def test_the_passphrase_and_password_can_be_typed_at_hidden_prompts(
    runner: CliRunner, creds_file: list[str]
) -> None:
    args = ["credentials", "set-mt5", "--login", "7001", "--server", "Broker-Demo", *creds_file]
    typed = f"{PASSWORD}\n{PASSWORD}\n{PASSPHRASE}\n{PASSPHRASE}\n"  # password twice, new passphrase twice
    stored = invoke(runner, args, typed, passphrase=None)
    assert stored.exit_code == 0, stored.output
    assert PASSWORD not in stored.output
    shown = invoke(runner, ["credentials", "show", *creds_file], f"{PASSPHRASE}\n", passphrase=None)
    assert shown.exit_code == 0, shown.output
    assert "default" in shown.stdout
    assert "7001" in shown.stdout


def test_a_wrong_passphrase_is_one_error_line(runner: CliRunner, creds_file: list[str]) -> None:
    invoke(runner, ["credentials", "set-device-key", "--key-stdin", *creds_file], DEVICE_KEY + "\n")
    result = invoke(runner, ["credentials", "show", *creds_file], passphrase="not it")
    assert result.exit_code == 2
    assert result.stderr.strip().startswith("error: wrong passphrase for the credentials file")
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_secret_on_stdin_needs_the_passphrase_from_the_environment(
    runner: CliRunner, creds_file: list[str]
) -> None:
    result = invoke(runner, ["credentials", "set-device-key", "--key-stdin", *creds_file], DEVICE_KEY, None)
    assert result.exit_code == 2
    assert "give the passphrase of" in result.stderr
    assert PASSPHRASE_ENV in result.stderr


def test_clear_removes_one_named_login(runner: CliRunner, creds_file: list[str]) -> None:
    for name in ("live", "demo"):
        args = ["credentials", "set-mt5", "--account", name, "--login", "1", "--server", f"S-{name}"]
        assert invoke(runner, [*args, "--password-stdin", *creds_file], "pw\n").exit_code == 0
    assert invoke(runner, ["credentials", "clear", "--account", "live", "--yes", *creds_file]).exit_code == 0
    shown = invoke(runner, ["credentials", "show", *creds_file]).stdout
    assert "S-demo" in shown
    assert "S-live" not in shown
    missing = invoke(runner, ["credentials", "clear", "--account", "live", "--yes", *creds_file])
    assert missing.exit_code == 2
    assert "no MT5 login is stored as 'live'" in missing.stderr


def test_file_with_the_keyring_store_is_refused(runner: CliRunner, tmp_path: Path) -> None:
    result = invoke(runner, ["credentials", "show", "--store", "keyring", "--file", str(tmp_path / "c.bin")])
    assert result.exit_code == 2
    assert "--file goes with --store file" in result.stderr


# -- run ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "why"),
    [("mt4", "unknown kind 'mt4'"), ("sim@127.0.0.1:1", "only mt5linux takes"), ("mt5linux@h:x", "port 'x'")],
)
def test_run_with_a_bad_terminal_spec_exits_with_one_line(runner: CliRunner, spec: str, why: str) -> None:
    result = invoke(runner, ["run", "--terminal", spec, "--no-status"])
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: terminal '{spec}': ")
    assert why in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.skipif(importlib.util.find_spec("MetaTrader5") is not None, reason="MetaTrader5 is installed")
def test_run_with_an_mt5_terminal_without_the_package_exits_with_one_line(
    runner: CliRunner, creds_file: list[str]
) -> None:
    result = invoke(runner, ["run", "--terminal", "mt5", "--no-status", *creds_file])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert lines == [lines[0]]
    assert lines[0].startswith("error: terminal mt5: the MetaTrader5 package is not installed")
    assert "Traceback" not in result.output


def test_run_outside_development_needs_a_stored_device_key(
    runner: CliRunner, creds_file: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AITRADING_MODE", "production")
    monkeypatch.setenv("AITRADING_SECURITY__SECRET_KEY", "s" * 40)
    monkeypatch.setenv("AITRADING_SECURITY__SERVICE_TOKEN_SECRET", "t" * 40)
    missing = invoke(runner, ["run", "--no-status", *creds_file])
    assert missing.exit_code == 2
    assert "no device key stored; run `aitrading agent credentials set-device-key`" in missing.stderr
    dev_key = invoke(runner, ["run", "--no-status", "--dev-key", *creds_file])
    assert dev_key.exit_code == 2
    assert "--dev-key works only in development mode" in dev_key.stderr


# -- status ---------------------------------------------------------------------------------------------

STATUS = AgentStatus(
    state="running",
    link="connected",
    bridge_url="ws://127.0.0.1:8001/ws/agent",
    device_id="desk-7",
    buffered_batches=3,
    buffered_ticks=1_234,
    ticks_per_s_read=812.5,
    ticks_per_s_sent=800.0,
    ticks_read=98_765,
    ticks_sent=97_531,
    reconnects=2,
    sources=[
        SourceStatus(src="desk-7/ICMarketsSC-Live", acked_seq=4_711, buffered_batches=3, symbols=["EURUSD"]),
        SourceStatus(src="desk-7/Pepperstone-Demo", acked_seq=17, buffered_batches=0, symbols=["XAUUSD"]),
    ],
    last_error="bridge closed the link: going away",
)


@pytest.fixture
def status_url() -> Iterator[tuple[str, list[AgentStatus]]]:
    """A real status API (uvicorn on a free port) in a thread, answering whatever the test puts first."""
    answers = [STATUS]

    async def provider() -> AgentStatus:
        return answers[0]

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    server = StatusServer(create_status_app(provider), port=0)
    asyncio.run_coroutine_threadsafe(server.start(), loop).result(10)
    try:
        yield f"http://127.0.0.1:{server.port}", answers
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


def test_status_prints_link_buffer_rates_and_acked_seq_per_source(
    runner: CliRunner, status_url: tuple[str, list[AgentStatus]]
) -> None:
    url, _ = status_url
    result = runner.invoke(app, ["status", "--url", url])
    assert result.exit_code == 0, result.output
    out = result.stdout
    for expected in (
        "Agent desk-7",
        "connected to ws://127.0.0.1:8001/ws/agent, 2 reconnect(s)",
        "3 batch(es), 1,234 tick(s)",
        "812.5 ticks/s, 98,765 in all",
        "800.0 ticks/s, 97,531 in all",
        "desk-7/ICMarketsSC-Live",
        "4711",
        "desk-7/Pepperstone-Demo",
        "bridge closed the link: going away",
    ):
        assert expected in out


def test_status_of_a_faulted_agent_exits_1(
    runner: CliRunner, status_url: tuple[str, list[AgentStatus]]
) -> None:
    url, answers = status_url
    answers[0] = STATUS.model_copy(update={"state": "faulted", "link": "auth_failed"})
    result = runner.invoke(app, ["status", "--url", url])
    assert result.exit_code == 1
    assert "faulted" in result.stdout


def test_status_without_an_agent_is_one_line(runner: CliRunner) -> None:
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = runner.invoke(app, ["status", "--url", f"http://127.0.0.1:{port}"])
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: no agent status at http://127.0.0.1:{port}: ")
    assert "is `aitrading agent run` running?" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
