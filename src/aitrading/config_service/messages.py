"""The config service's bus messages: a change announcement per tenant, or for everyone."""

from __future__ import annotations

from aitrading.common.bus.codec import Message

__all__ = ["CHANGED_ALL", "GLOBAL_SUBJECT", "ConfigChanged", "changed_subject"]

GLOBAL_SUBJECT = "cfg.changed.global"
CHANGED_ALL = "cfg.changed.>"
"""The pattern a cache subscribes to: every tenant's changes and the global ones."""


class ConfigChanged(Message, frozen=True, kw_only=True):
    """A config entry changed (or was deleted): whose, which namespace, its new version, by whom and when."""

    scope: str
    namespace: str
    version: int
    tenant: str | None = None
    user: str | None = None
    actor: str = ""
    ts_ns: int = 0
    deleted: bool = False


def changed_subject(tenant: str | None) -> str:
    """Return `cfg.changed.<tenant>` for a tenant's (or its users') change, `cfg.changed.global` otherwise."""
    return GLOBAL_SUBJECT if tenant is None else f"cfg.changed.{tenant}"
