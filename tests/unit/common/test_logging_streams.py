"""Logging writes to whatever stderr is at the time, never to a stream a CLI run has since closed."""

from __future__ import annotations

import io
import sys

import pytest
import structlog

from aitrading.common.logging import configure_logging


@pytest.mark.parametrize("json", [True, False])
def test_an_exception_logged_after_a_cli_run_closed_its_streams_goes_to_the_current_stderr(
    json: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    cli_out, cli_err = io.StringIO(), io.StringIO()
    with monkeypatch.context() as m:  # a CLI run (typer's CliRunner) swaps the streams, then closes them
        m.setattr(sys, "stdout", cli_out)
        m.setattr(sys, "stderr", cli_err)
        configure_logging("WARNING", json=json)
    cli_out.close()
    cli_err.close()
    now = io.StringIO()
    monkeypatch.setattr(sys, "stderr", now)
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        structlog.get_logger("t").exception("handler_failed")
    assert "handler_failed" in now.getvalue()
    assert "RuntimeError: boom" in now.getvalue()
    configure_logging("INFO")
