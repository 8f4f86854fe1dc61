"""The credential store keeps secrets in the OS keyring or an encrypted file, never in clear."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest
from keyring.backend import KeyringBackend
from keyring.backends import fail, null

from aitrading.agent.credentials import (
    Argon2Params,
    CredentialError,
    CredentialStore,
    EncryptedFileSecrets,
    MT5Login,
    keyring_usable,
)

FAST = Argon2Params(time_cost=1, memory_kib=64, parallelism=1)  # tests only; the default costs 64 MiB
LOGIN = MT5Login(login=51234567, password="Tr4der!pass-Ω", server="ICMarketsSC-Demo")
DEVICE_KEY = "dk_live_0123456789abcdef0123456789abcdef"
NO_KEYRING = (fail.Keyring(), null.Keyring())  # type: ignore[no-untyped-call]


class MemoryKeyring(KeyringBackend):
    """A working OS keyring stand-in."""

    priority = 1

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.items: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.items.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.items[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        from keyring.errors import PasswordDeleteError

        if self.items.pop((service, username), None) is None:
            raise PasswordDeleteError(username)


def file_store(path: Path, passphrase: str = "correct horse battery staple") -> CredentialStore:
    return CredentialStore.open(prefer="file", path=path, passphrase=passphrase, params=FAST)


def test_the_encrypted_file_round_trips_the_mt5_login_and_device_key(tmp_path: Path) -> None:
    path = tmp_path / "agent-credentials.bin"
    store = file_store(path)
    store.set_mt5(LOGIN)
    store.set_device_key(DEVICE_KEY)

    again = file_store(path)

    assert again.kind == "file"
    assert again.mt5() == LOGIN
    assert again.device_key() == DEVICE_KEY


def test_the_file_never_holds_a_secret_in_clear(tmp_path: Path) -> None:
    path = tmp_path / "agent-credentials.bin"
    store = file_store(path)
    store.set_mt5(LOGIN)
    store.set_device_key(DEVICE_KEY)

    blob = path.read_bytes()

    for secret in (LOGIN.password, LOGIN.server, str(LOGIN.login), DEVICE_KEY, "password", "device_key"):
        for encoding in ("utf-8", "utf-16-le"):
            assert secret.encode(encoding) not in blob
    assert LOGIN.password not in repr(LOGIN)


def test_every_write_uses_a_new_salt_and_nonce(tmp_path: Path) -> None:
    path = tmp_path / "agent-credentials.bin"
    store = file_store(path)
    store.set_device_key(DEVICE_KEY)
    first = path.read_bytes()
    store.set_device_key(DEVICE_KEY)
    second = path.read_bytes()

    salt_and_nonce = slice(17, 17 + 16 + 12)
    assert first[salt_and_nonce] != second[salt_and_nonce]
    assert first != second


def test_a_wrong_passphrase_is_named_as_such(tmp_path: Path) -> None:
    path = tmp_path / "agent-credentials.bin"
    file_store(path).set_device_key(DEVICE_KEY)

    with pytest.raises(CredentialError, match="wrong passphrase for the credentials file"):
        file_store(path, "not the passphrase").device_key()


def test_a_tampered_file_is_detected(tmp_path: Path) -> None:
    path = tmp_path / "agent-credentials.bin"
    file_store(path).set_mt5(LOGIN)
    blob = bytearray(path.read_bytes())
    blob[-20] ^= 0x01  # one bit of the ciphertext
    path.write_bytes(bytes(blob))

    with pytest.raises(CredentialError, match="was modified or is corrupted"):
        file_store(path).mt5()


@pytest.mark.parametrize("damage", ["truncate", "magic", "costs"])
def test_a_damaged_file_gets_a_clear_error(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "agent-credentials.bin"
    file_store(path).set_device_key(DEVICE_KEY)
    blob = bytearray(path.read_bytes())
    if damage == "truncate":
        blob = blob[:30]
    elif damage == "magic":
        blob[0:8] = b"PLAINTXT"
    else:
        blob[12:16] = (2**31).to_bytes(4, "big")  # absurd memory cost
    path.write_bytes(bytes(blob))

    with pytest.raises(CredentialError, match=r"not an aitrading credentials file|corrupted"):
        file_store(path).device_key()


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions")
def test_the_file_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "agent-credentials.bin"
    file_store(path).set_device_key(DEVICE_KEY)

    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp file left behind


def test_a_missing_file_holds_nothing(tmp_path: Path) -> None:
    store = file_store(tmp_path / "absent.bin")

    assert store.mt5() is None
    assert store.device_key() is None


def test_an_empty_passphrase_is_refused(tmp_path: Path) -> None:
    store = CredentialStore(EncryptedFileSecrets(tmp_path / "c.bin", "", FAST))

    with pytest.raises(CredentialError, match="passphrase is needed"):
        store.set_device_key(DEVICE_KEY)


def test_the_passphrase_may_be_asked_for_lazily(tmp_path: Path) -> None:
    asked: list[int] = []

    def prompt() -> str:
        asked.append(1)
        return "from a prompt"

    store = CredentialStore.open(prefer="file", path=tmp_path / "c.bin", passphrase=prompt, params=FAST)
    assert asked == []
    store.set_device_key(DEVICE_KEY)
    assert store.device_key() == DEVICE_KEY


def test_auto_falls_back_to_the_file_without_a_usable_keyring(tmp_path: Path) -> None:
    for backend in NO_KEYRING:
        assert not keyring_usable(backend)
        store = CredentialStore.open(
            path=tmp_path / "c.bin", passphrase="pw", keyring_backend=backend, params=FAST
        )
        assert store.kind == "file"


def test_auto_without_a_keyring_or_a_passphrase_explains_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(CredentialError, match="needs a path and a passphrase"):
        CredentialStore.open(path=tmp_path / "c.bin", keyring_backend=NO_KEYRING[0])


def test_a_usable_keyring_is_preferred_and_round_trips(tmp_path: Path) -> None:
    backend = MemoryKeyring()
    store = CredentialStore.open(path=tmp_path / "c.bin", passphrase="pw", keyring_backend=backend)
    store.set_mt5(LOGIN)
    store.set_device_key(DEVICE_KEY)

    assert store.kind == "keyring"
    assert store.mt5() == LOGIN
    assert store.device_key() == DEVICE_KEY
    assert not (tmp_path / "c.bin").exists()
    assert {name for _, name in backend.items} == {"mt5", "device_key"}
    store.clear()
    assert store.mt5() is None
    store.clear()  # clearing twice is harmless


def test_asking_for_the_keyring_where_there_is_none_is_an_error() -> None:
    with pytest.raises(CredentialError, match="no usable OS keyring"):
        CredentialStore.open(prefer="keyring", keyring_backend=NO_KEYRING[0])
