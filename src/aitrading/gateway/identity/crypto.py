"""Encryption at rest of small secrets (TOTP secrets, private signing keys) and keyed hashes.

Each purpose gets its own 256-bit key derived from `security.secret_key` with HKDF-SHA256 (RFC 5869), so a
key never serves two purposes. Encryption is AES-256-GCM with a random 96-bit nonce; the row's identity
goes in as associated data, so a ciphertext copied into another row does not decrypt. The stored text is
`v1.<base64url(nonce ‖ ciphertext ‖ tag)>`; the version leaves room for rotating the master secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from aitrading.common.errors import OperationalError

__all__ = ["SecretBox", "derive_key"]

_VERSION = "v1"
_NONCE = 12
_SALT = b"aitrading.identity"


def derive_key(master: str, purpose: str) -> bytes:
    """Return the 32-byte key for `purpose` derived from the `master` secret."""
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=_SALT, info=purpose.encode())
    return hkdf.derive(master.encode())


class SecretBox:
    """Encrypt and decrypt text bound to a context (e.g. the owning row's id)."""

    def __init__(self, master: str, purpose: str) -> None:
        self._aead = AESGCM(derive_key(master, f"{purpose}:aes-gcm"))
        self._mac_key = derive_key(master, f"{purpose}:hmac")

    def encrypt(self, plaintext: str, context: str) -> str:
        """Return the stored form of `plaintext`, decryptable only with the same `context`."""
        nonce = os.urandom(_NONCE)
        sealed = self._aead.encrypt(nonce, plaintext.encode(), context.encode())
        return f"{_VERSION}.{base64.urlsafe_b64encode(nonce + sealed).decode()}"

    def decrypt(self, stored: str, context: str) -> str:
        """Return the plaintext of `stored`; raise ValueError if it was altered or belongs elsewhere."""
        version, _, body = stored.partition(".")
        if version != _VERSION or not body:
            raise ValueError("unknown ciphertext format")
        try:
            raw = base64.urlsafe_b64decode(body.encode())
            return self._aead.decrypt(raw[:_NONCE], raw[_NONCE:], context.encode()).decode()
        except (InvalidTag, ValueError) as exc:
            raise ValueError("ciphertext does not decrypt (tampered, or another row's)") from exc

    def open(self, stored: str, context: str, what: str) -> str:
        """Decrypt like `decrypt`, but a failure is an `OperationalError` naming the likely cause."""
        try:
            return self.decrypt(stored, context)
        except ValueError:
            raise OperationalError(
                f"{what} cannot be decrypted: was security.secret_key changed since it was stored?"
            ) from None

    def mac(self, text: str) -> str:
        """Return HMAC-SHA256(`text`) under this purpose's key, as hex."""
        return hmac.new(self._mac_key, text.encode(), hashlib.sha256).hexdigest()
