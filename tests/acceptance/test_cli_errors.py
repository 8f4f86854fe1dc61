"""Bad input at the command line: one clear line each, and a non-zero exit."""

from __future__ import annotations

import socket
from pathlib import Path

from platform_helpers import platform_env, run_cli


def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


def test_unknown_config_key_in_environment_is_one_clear_line(tmp_path: Path) -> None:
    env = platform_env(tmp_path, AITRADING_STORAGE__NO_SUCH_KEY="1")
    result = run_cli(["up"], env, tmp_path)
    assert result.returncode == 2
    assert one_error_line(result.stderr) == "error: unknown config key 'storage.no_such_key'"


def test_unknown_config_key_in_yaml_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "aitrading.yaml").write_text("bus:\n  kind: memory\n  colour: blue\n")
    result = run_cli(["up"], platform_env(tmp_path), tmp_path)
    assert result.returncode == 2
    assert one_error_line(result.stderr) == "error: unknown config key 'bus.colour'"


def test_production_mode_without_real_secrets_refuses_to_start_and_names_them(tmp_path: Path) -> None:
    env = platform_env(
        tmp_path, AITRADING_MODE="production", AITRADING_SECURITY__SECRET_KEY="s3cret-real-value"
    )
    result = run_cli(["up"], env, tmp_path)
    assert result.returncode == 2
    line = one_error_line(result.stderr)
    assert "security.service_token_secret" in line
    assert "security.secret_key" not in line
    assert "AITRADING_SECURITY__SERVICE_TOKEN_SECRET" in line


def test_port_already_in_use_is_one_clear_line(tmp_path: Path) -> None:
    env = platform_env(tmp_path)
    port = int(env["AITRADING_SERVICES__BRIDGE"])
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        result = run_cli(["up"], env, tmp_path)
    assert result.returncode == 2
    assert one_error_line(result.stderr) == f"error: port {port} (bridge) is already in use on 127.0.0.1"


def test_serving_an_unknown_service_names_the_known_ones(tmp_path: Path) -> None:
    result = run_cli(["serve", "nope"], platform_env(tmp_path), tmp_path)
    assert result.returncode == 2
    assert "unknown service(s) nope" in one_error_line(result.stderr)
