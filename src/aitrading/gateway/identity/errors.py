"""Errors of the identity service; the routes turn each into its HTTP status with the reason."""

from __future__ import annotations

from aitrading.common.errors import BadInputError

__all__ = ["AuthenticationError", "ConflictError", "ThrottledError"]


class AuthenticationError(BadInputError):
    """The credentials are missing, wrong or no longer valid (HTTP 401).

    `code` is a stable machine-readable word (`invalid_credentials`, `mfa_required`, `invalid_token`, …).
    """

    def __init__(self, reason: str, code: str = "invalid_credentials") -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


class ThrottledError(BadInputError):
    """Too many failed attempts: try again after `retry_after_s` seconds (HTTP 429)."""

    def __init__(self, retry_after_s: int) -> None:
        super().__init__("too many failed attempts; try again later")
        self.retry_after_s = max(1, retry_after_s)


class ConflictError(BadInputError):
    """The request clashes with the current state, e.g. the e-mail is taken (HTTP 409)."""
