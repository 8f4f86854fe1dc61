"""Errors grouped by what the caller should do about them.

- `OperationalError`: the component cannot go on (bad deployment, lost invariant) → stop and alert.
- `TemporaryError`: the world may heal (network, broker busy) → retry with backoff.
- `BadInputError`: the request is wrong → reject it with a clear message; retrying will not help.
"""

from __future__ import annotations

__all__ = [
    "AITradingError",
    "BadInputError",
    "ConfigError",
    "NotFoundError",
    "OperationalError",
    "PermissionDeniedError",
    "TemporaryError",
]


class AITradingError(Exception):
    """Base of every error the platform raises on purpose."""

    recovery = "stop"


class OperationalError(AITradingError):
    """The component cannot continue; stop it and alert an operator."""

    recovery = "stop"


class ConfigError(OperationalError):
    """The configuration is invalid; the message names the key and the fix."""


class TemporaryError(AITradingError):
    """A transient failure; retry with backoff."""

    recovery = "retry"


class BadInputError(AITradingError):
    """The input is wrong; reject it with this message."""

    recovery = "reject"


class NotFoundError(BadInputError):
    """The thing asked for does not exist (or is not the caller's to see)."""


class PermissionDeniedError(BadInputError):
    """The caller may not do this."""
