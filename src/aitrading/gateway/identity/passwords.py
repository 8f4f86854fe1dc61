"""Passwords: argon2id hashes (rehashed when the parameters change) and the password policy.

Hashing runs in a worker thread: one argon2id hash at the RFC 9106 second recommended parameters costs tens
of milliseconds of CPU and 64 MiB, which must not stall the event loop that serves every other request.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from aitrading.common.errors import BadInputError

__all__ = ["MAX_PASSWORD_LENGTH", "PasswordCheck", "Passwords", "check_password_policy"]

MAX_PASSWORD_LENGTH = 256
"""Longer input is refused before hashing (hash cost grows with length; no real password is this long)."""


def check_password_policy(password: str, *, min_length: int = 12, email: str = "") -> None:
    """Raise `BadInputError` naming the rule `password` breaks (length, or too close to the account name)."""
    if len(password) < min_length:
        raise BadInputError(f"the password must be at least {min_length} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise BadInputError(f"the password must be at most {MAX_PASSWORD_LENGTH} characters")
    if len(set(password)) < 4:
        raise BadInputError("the password must use at least 4 different characters")
    local = email.split("@", 1)[0].lower()
    if email and (password.lower() == email.lower() or (len(local) >= 4 and local in password.lower())):
        raise BadInputError("the password must not contain the account's e-mail name")


@dataclass(frozen=True, slots=True)
class PasswordCheck:
    """The outcome of checking a password: whether it matched, and the new hash if it needs rehashing."""

    ok: bool
    new_hash: str | None = None


class Passwords:
    """Hash and verify passwords with argon2id."""

    def __init__(self, hasher: PasswordHasher | None = None) -> None:
        self._hasher = hasher or PasswordHasher(type=Type.ID)  # argon2-cffi's defaults are RFC 9106's
        if self._hasher.type is not Type.ID:
            raise ValueError("passwords are hashed with argon2id")
        self._dummy: str | None = None

    def hash_sync(self, password: str) -> str:
        """Return the argon2id PHC string of `password` (blocking)."""
        return self._hasher.hash(password)

    async def hash(self, password: str) -> str:
        """Return the argon2id PHC string of `password`."""
        return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, stored: str | None, password: str) -> PasswordCheck:
        """Check `password` against `stored`; with `stored` None spend the same time and fail.

        On a match whose hash used other parameters than the current ones, `new_hash` holds a fresh hash for
        the caller to store.
        """
        return await asyncio.to_thread(self._verify, stored, password)

    def _verify(self, stored: str | None, password: str) -> PasswordCheck:
        if len(password) > MAX_PASSWORD_LENGTH:
            return PasswordCheck(False)
        if stored is None:
            # Unknown account: do the same work as for a known one, so timing does not reveal which it is.
            if self._dummy is None:
                self._dummy = self._hasher.hash("not a real password, only a timing dummy")
            stored = self._dummy
        try:
            self._hasher.verify(stored, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return PasswordCheck(False)
        if stored is self._dummy:
            return PasswordCheck(False)
        new_hash = self._hasher.hash(password) if self._hasher.check_needs_rehash(stored) else None
        return PasswordCheck(True, new_hash)
