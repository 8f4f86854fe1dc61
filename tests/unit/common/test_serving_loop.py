"""`services.event_loop`: the platform's processes run on the loop the config asks for."""

import asyncio
import builtins
from typing import Any

import pytest

from aitrading.common import serving
from aitrading.common.config import PlatformConfig
from aitrading.common.errors import ConfigError


async def _loop_module() -> str:
    return type(asyncio.get_running_loop()).__module__


def test_auto_and_uvloop_run_on_uvloop_and_asyncio_on_asyncios_loop() -> None:
    pytest.importorskip("uvloop")
    assert serving.run(_loop_module(), "auto").startswith("uvloop")
    assert serving.run(_loop_module(), "uvloop").startswith("uvloop")
    assert serving.run(_loop_module(), "asyncio").startswith("asyncio")


def test_without_uvloop_auto_falls_back_and_uvloop_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def no_uvloop(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "uvloop":
            raise ImportError("no uvloop here")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_uvloop)
    assert serving.run(_loop_module(), "auto").startswith("asyncio")
    with pytest.raises(ConfigError, match="uvloop is not installed"):
        serving.run(_loop_module(), "uvloop")


def test_the_default_config_picks_the_loop_automatically() -> None:
    assert PlatformConfig().services.event_loop == "auto"
