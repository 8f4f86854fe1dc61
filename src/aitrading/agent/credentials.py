"""Where the agent keeps the MT5 login and its device key: the OS keyring, or an encrypted file.

The OS keyring (`keyring`: Windows Credential Manager, which DPAPI protects; macOS Keychain; Secret
Service on Linux) is the first choice. Where none is usable (keyring's `fail`/`null` backends, or only
the plain-text or home-made backends of `keyrings.alt`), the secrets go to one file encrypted with
AES-256-GCM under a key derived from a passphrase with argon2id; every write draws a new salt and nonce.
Secrets are never written in clear.

File layout: `AITCRED1` | time_cost u32 | memory_kib u32 | parallelism u8 | salt[16] | nonce[12] |
check[32] | ciphertext+tag. argon2id yields 64 bytes: the first 32 are the AES key, the last 32 the
stored `check`, which tells a wrong passphrase apart from a modified file. The whole header is the
cipher's associated data, so changing any byte of it is detected too.
"""

from __future__ import annotations

import hmac
import json
import os
import secrets
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from argon2.low_level import Type, hash_secret_raw
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from aitrading.common.errors import BadInputError

__all__ = [
    "Argon2Params",
    "CredentialError",
    "CredentialStore",
    "EncryptedFileSecrets",
    "KeyringSecrets",
    "MT5Login",
    "keyring_usable",
]

SERVICE = "aitrading-agent"
_MAGIC = b"AITCRED1"
_HEADER = struct.Struct(">8sIIB16s12s32s")
_MT5 = "mt5"
_DEVICE_KEY = "device_key"


class CredentialError(BadInputError):
    """The credentials cannot be read or written; the message says why and what to do."""


@dataclass(frozen=True)
class MT5Login:
    """An MT5 trading account login."""

    login: int
    password: str = field(repr=False)
    server: str


@dataclass(frozen=True)
class Argon2Params:
    """argon2id cost: RFC 9106's second recommendation by default (t=3, 64 MiB, p=4)."""

    time_cost: int = 3
    memory_kib: int = 65_536
    parallelism: int = 4

    def acceptable(self) -> bool:
        """Return whether these costs are sane (a forged header must not make us allocate gigabytes)."""
        return (
            1 <= self.time_cost <= 64
            and 1 <= self.parallelism <= 64
            and 8 * self.parallelism <= self.memory_kib <= 4_194_304
        )


class SecretBackend(Protocol):
    """A place for named secret strings."""

    kind: str

    def get(self, name: str) -> str | None: ...

    def set(self, name: str, value: str) -> None: ...

    def delete(self, name: str) -> None: ...


def keyring_usable(backend: Any = None) -> bool:
    """Return whether `backend` (default: keyring's choice) keeps secrets in a real OS store."""
    import keyring
    from keyring.backends import chainer, fail, null

    kr = backend if backend is not None else keyring.get_keyring()
    if isinstance(kr, chainer.ChainerBackend):
        return any(keyring_usable(b) for b in kr.backends)
    if isinstance(kr, fail.Keyring | null.Keyring):
        return False
    # keyrings.alt holds plain-text and home-made encrypted files: not what we promise.
    return not type(kr).__module__.startswith("keyrings.alt") and float(kr.priority) > 0


class KeyringSecrets:
    """Secrets in the OS keyring under one service name."""

    kind = "keyring"

    def __init__(self, service: str = SERVICE, backend: Any = None) -> None:
        import keyring

        self.service = service
        self._kr = backend if backend is not None else keyring.get_keyring()

    def get(self, name: str) -> str | None:
        value = self._guard(lambda: self._kr.get_password(self.service, name))
        return None if value is None else str(value)

    def set(self, name: str, value: str) -> None:
        self._guard(lambda: self._kr.set_password(self.service, name, value))

    def delete(self, name: str) -> None:
        from keyring.errors import PasswordDeleteError

        try:
            self._guard(lambda: self._kr.delete_password(self.service, name))
        except CredentialError as exc:
            if not isinstance(exc.__cause__, PasswordDeleteError):
                raise

    def _guard(self, call: Callable[[], Any]) -> Any:
        from keyring.errors import KeyringError

        try:
            return call()
        except KeyringError as exc:
            raise CredentialError(f"the OS keyring failed: {exc}") from exc


class EncryptedFileSecrets:
    """Secrets in one AES-256-GCM file keyed by a passphrase through argon2id."""

    kind = "file"

    def __init__(
        self, path: Path | str, passphrase: str | Callable[[], str], params: Argon2Params | None = None
    ) -> None:
        self.path = Path(path)
        self._passphrase = passphrase
        self._params = params or Argon2Params()

    def get(self, name: str) -> str | None:
        return self._read().get(name)

    def set(self, name: str, value: str) -> None:
        data = self._read()
        data[name] = value
        self._write(data)

    def delete(self, name: str) -> None:
        data = self._read()
        if data.pop(name, None) is not None:
            self._write(data)

    # -- internals ---------------------------------------------------------------------------------

    def _secret(self) -> bytes:
        value = self._passphrase() if callable(self._passphrase) else self._passphrase
        if not value:
            raise CredentialError(f"a passphrase is needed to open the credentials file {self.path}")
        return value.encode("utf-8")

    def _derive(self, params: Argon2Params, salt: bytes) -> tuple[bytes, bytes]:
        out = hash_secret_raw(
            self._secret(), salt, params.time_cost, params.memory_kib, params.parallelism, 64, Type.ID
        )
        return out[:32], out[32:]

    def _read(self) -> dict[str, str]:
        try:
            blob = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise CredentialError(f"cannot read the credentials file {self.path}: {exc}") from exc
        if len(blob) < _HEADER.size + 16 or not blob.startswith(_MAGIC):
            raise CredentialError(f"{self.path} is not an aitrading credentials file, or it is truncated")
        header = blob[: _HEADER.size]
        _, t, m, p, salt, nonce, check = _HEADER.unpack(header)
        params = Argon2Params(t, m, p)
        if not params.acceptable():
            raise CredentialError(f"the credentials file {self.path} is corrupted (impossible key costs)")
        key, expected = self._derive(params, salt)
        if not hmac.compare_digest(check, expected):
            raise CredentialError(f"wrong passphrase for the credentials file {self.path}")
        try:
            plain = AESGCM(key).decrypt(nonce, blob[_HEADER.size :], header)
        except InvalidTag:
            raise CredentialError(
                f"the credentials file {self.path} was modified or is corrupted; store the credentials again"
            ) from None
        data = json.loads(plain)
        return {str(k): str(v) for k, v in data.items()}

    def _write(self, data: dict[str, str]) -> None:
        salt, nonce = secrets.token_bytes(16), secrets.token_bytes(12)
        key, check = self._derive(self._params, salt)
        p = self._params
        header = _HEADER.pack(_MAGIC, p.time_cost, p.memory_kib, p.parallelism, salt, nonce, check)
        blob = header + AESGCM(key).encrypt(nonce, json.dumps(data).encode("utf-8"), header)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o600)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(blob)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)  # atomic: a crash leaves the old file or the new one
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise


class CredentialStore:
    """The MT5 login and the device key, in the OS keyring or the encrypted-file fallback."""

    def __init__(self, backend: SecretBackend) -> None:
        self.backend = backend

    @classmethod
    def open(
        cls,
        *,
        prefer: Literal["auto", "keyring", "file"] = "auto",
        path: Path | str | None = None,
        passphrase: str | Callable[[], str] | None = None,
        service: str = SERVICE,
        keyring_backend: Any = None,
        params: Argon2Params | None = None,
    ) -> CredentialStore:
        """Pick the keyring when it is usable (or asked for), else the encrypted file at `path`."""
        if prefer == "keyring" or (prefer == "auto" and keyring_usable(keyring_backend)):
            if prefer == "keyring" and not keyring_usable(keyring_backend):
                raise CredentialError("no usable OS keyring here; use the encrypted credentials file")
            return cls(KeyringSecrets(service, keyring_backend))
        if path is None or passphrase is None:
            raise CredentialError(
                "no usable OS keyring: the encrypted credentials file needs a path and a passphrase"
            )
        return cls(EncryptedFileSecrets(path, passphrase, params))

    @property
    def kind(self) -> str:
        """`keyring` or `file`."""
        return self.backend.kind

    def set_mt5(self, login: MT5Login) -> None:
        """Store the MT5 login, password and server."""
        value = {"login": int(login.login), "password": login.password, "server": login.server}
        self.backend.set(_MT5, json.dumps(value))

    def mt5(self) -> MT5Login | None:
        """Return the stored MT5 login, or `None`."""
        raw = self.backend.get(_MT5)
        if raw is None:
            return None
        data = json.loads(raw)
        return MT5Login(login=int(data["login"]), password=str(data["password"]), server=str(data["server"]))

    def set_device_key(self, key: str) -> None:
        """Store the device key the bridge knows this agent by."""
        if not key:
            raise CredentialError("the device key is empty")
        self.backend.set(_DEVICE_KEY, key)

    def device_key(self) -> str | None:
        """Return the stored device key, or `None`."""
        return self.backend.get(_DEVICE_KEY)

    def clear(self) -> None:
        """Remove every secret this store holds."""
        for name in (_MT5, _DEVICE_KEY):
            self.backend.delete(name)
