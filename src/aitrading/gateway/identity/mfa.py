"""TOTP (RFC 6238) second factor: secrets, provisioning URIs, verification without replay, backup codes.

A code is accepted for the current 30-second step and one step either side (clock drift), and only for a
step later than the last one accepted for the user: a code, once used, never works again, and neither does
any older code (RFC 6238 §5.2). Backup codes carry 80 random bits each and are stored as HMAC-SHA256 under
a key derived from the server secret, so a stolen table alone does not let anyone test guesses.
"""

from __future__ import annotations

import base64
import hmac
import re
import secrets
from dataclasses import dataclass

import pyotp

__all__ = [
    "BACKUP_CODE_COUNT",
    "TOTP_DIGITS",
    "TOTP_STEP_S",
    "Totp",
    "TotpMatch",
    "looks_like_backup_code",
    "new_backup_codes",
    "new_totp_secret",
    "normalise_backup_code",
]

TOTP_DIGITS = 6
TOTP_STEP_S = 30
BACKUP_CODE_COUNT = 10
_WINDOW = 1
_TOTP_CODE = re.compile(r"^\d{6}$")
_BACKUP = re.compile(r"^[A-Z2-7]{16}$")


def new_totp_secret() -> str:
    """Return a fresh base32 TOTP secret of 160 bits (the HMAC-SHA1 block recommendation of RFC 4226)."""
    return pyotp.random_base32(32)


def new_backup_codes(n: int = BACKUP_CODE_COUNT) -> list[str]:
    """Return `n` one-time backup codes like `ABCD-EFGH-IJKL-MNOP` (80 random bits each)."""
    out = []
    for _ in range(n):
        raw = base64.b32encode(secrets.token_bytes(10)).decode()
        out.append("-".join(raw[i : i + 4] for i in range(0, 16, 4)))
    return out


def normalise_backup_code(code: str) -> str:
    """Return the canonical form of a typed backup code (upper case, no separators)."""
    return re.sub(r"[\s-]", "", code).upper()


def looks_like_backup_code(code: str) -> bool:
    """Tell whether `code` has the shape of a backup code rather than a TOTP code."""
    return bool(_BACKUP.match(normalise_backup_code(code)))


@dataclass(frozen=True, slots=True)
class TotpMatch:
    """A code that verified: the time step it belongs to (store it as the user's last accepted step)."""

    step: int


class Totp:
    """TOTP of one secret."""

    def __init__(self, secret: str) -> None:
        self._totp = pyotp.TOTP(secret, digits=TOTP_DIGITS, interval=TOTP_STEP_S)

    def provisioning_uri(self, account: str, issuer: str) -> str:
        """Return the `otpauth://` URI authenticator apps read (usually from a QR code)."""
        return self._totp.provisioning_uri(name=account, issuer_name=issuer)

    def code_at(self, unix_s: int) -> str:
        """Return the code for the time `unix_s` (tests and tooling)."""
        return self._totp.generate_otp(unix_s // TOTP_STEP_S)

    def verify(self, code: str, unix_s: int, last_step: int | None) -> TotpMatch | None:
        """Return the match if `code` is valid at `unix_s` ±1 step and newer than `last_step`, else None."""
        code = code.strip()
        if not _TOTP_CODE.match(code):
            return None
        now_step = unix_s // TOTP_STEP_S
        found: int | None = None
        for step in range(now_step - _WINDOW, now_step + _WINDOW + 1):
            # Compare every candidate (constant work), remember the match.
            if hmac.compare_digest(self._totp.generate_otp(step), code) and found is None:
                found = step
        if found is None or (last_step is not None and found <= last_step):
            return None
        return TotpMatch(found)
