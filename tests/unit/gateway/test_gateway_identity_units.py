"""The identity building blocks on their own: passwords, TOTP, backup codes, encryption, tiers, throttle."""

from __future__ import annotations

import asyncio
import base64

import pyotp
import pytest
from argon2 import PasswordHasher, Type

from aitrading.common.clock import TestClock
from aitrading.common.errors import BadInputError
from aitrading.gateway.identity import TIERS, quota_of
from aitrading.gateway.identity.apikeys import parse_api_key
from aitrading.gateway.identity.config import IdentityConfig
from aitrading.gateway.identity.crypto import SecretBox
from aitrading.gateway.identity.mfa import (
    Totp,
    looks_like_backup_code,
    new_backup_codes,
    new_totp_secret,
    normalise_backup_code,
)
from aitrading.gateway.identity.passwords import Passwords, check_password_policy
from aitrading.gateway.identity.throttle import LoginThrottle, account_key
from aitrading.storage.cache import MemoryCache

CHEAP = PasswordHasher(time_cost=1, memory_cost=64, parallelism=1, type=Type.ID)
NOW = 1_704_067_200  # 2024-01-01T00:00:00Z, a multiple of 30


# --- passwords ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("password", "email", "rule"),
    [
        ("elevenchars", "", "at least 12"),
        ("a" * 257, "", "at most 256"),
        ("abababababababab", "", "4 different"),
        ("my-name-is-patricia-ok", "patricia@x.io", "e-mail name"),
    ],
)
def test_password_policy_names_the_rule_a_password_breaks(password: str, email: str, rule: str) -> None:
    with pytest.raises(BadInputError, match=rule):
        check_password_policy(password, email=email)


def test_password_policy_accepts_a_long_passphrase() -> None:
    check_password_policy("correct horse battery staple", email="pat@acme.io")


async def test_passwords_are_argon2id_and_verify_only_the_right_password() -> None:
    pw = Passwords(CHEAP)
    stored = await pw.hash("correct horse battery staple")
    assert stored.startswith("$argon2id$")
    assert (await pw.verify(stored, "correct horse battery staple")).ok
    assert not (await pw.verify(stored, "correct horse battery stapler")).ok
    assert not (await pw.verify(None, "correct horse battery staple")).ok
    assert not (await pw.verify("not a hash", "x")).ok


async def test_a_hash_with_old_parameters_comes_back_rehashed_with_the_new_ones() -> None:
    old = await Passwords(CHEAP).hash("correct horse battery staple")
    newer = Passwords(PasswordHasher(time_cost=2, memory_cost=128, parallelism=1, type=Type.ID))
    check = await newer.verify(old, "correct horse battery staple")
    assert check.ok
    assert check.new_hash is not None
    assert "m=128,t=2" in check.new_hash
    again = await newer.verify(check.new_hash, "correct horse battery staple")
    assert again.ok
    assert again.new_hash is None


def test_passwords_refuse_a_hasher_other_than_argon2id() -> None:
    with pytest.raises(ValueError, match="argon2id"):
        Passwords(PasswordHasher(type=Type.I))


# --- TOTP and backup codes ---------------------------------------------------------------------------------


def test_totp_matches_pyotp_and_accepts_one_step_either_side_only() -> None:
    secret = new_totp_secret()
    totp = Totp(secret)
    reference = pyotp.TOTP(secret)
    assert totp.code_at(NOW) == reference.at(NOW)
    for offset, accepted in ((-60, False), (-30, True), (0, True), (30, True), (60, False)):
        match = totp.verify(reference.at(NOW + offset), NOW, None)
        assert (match is not None) is accepted, offset


def test_totp_refuses_a_spent_step_and_any_older_one() -> None:
    totp = Totp(new_totp_secret())
    match = totp.verify(totp.code_at(NOW), NOW, None)
    assert match is not None
    assert totp.verify(totp.code_at(NOW), NOW, match.step) is None
    assert totp.verify(totp.code_at(NOW - 30), NOW, match.step) is None
    assert totp.verify(totp.code_at(NOW + 30), NOW, match.step) is not None


@pytest.mark.parametrize("code", ["", "12345", "1234567", "abcdef", "12 345"])
def test_totp_refuses_codes_of_the_wrong_shape(code: str) -> None:
    assert Totp(new_totp_secret()).verify(code, NOW, None) is None


def test_provisioning_uri_names_the_issuer_and_account() -> None:
    uri = Totp(new_totp_secret()).provisioning_uri("pat@acme.io", "AI Trading")
    assert uri.startswith("otpauth://totp/AI%20Trading:pat%40acme.io?secret=")
    assert "issuer=AI%20Trading" in uri


def test_backup_codes_are_ten_distinct_80_bit_codes_that_normalise() -> None:
    codes = new_backup_codes()
    assert len(set(codes)) == 10
    for code in codes:
        assert len(code) == 19
        assert code.count("-") == 3
        assert looks_like_backup_code(code.lower())
        assert normalise_backup_code(f" {code.lower()} ") == code.replace("-", "")
    assert not looks_like_backup_code("123456")


# --- encryption at rest --------------------------------------------------------------------------------


def test_secret_box_round_trips_and_binds_the_ciphertext_to_its_context() -> None:
    box = SecretBox("k" * 40, "mfa")
    stored = box.encrypt("JBSWY3DPEHPK3PXP", "mfa:user-1")
    assert stored.startswith("v1.")
    assert "JBSWY3DPEHPK3PXP" not in stored
    assert stored != box.encrypt("JBSWY3DPEHPK3PXP", "mfa:user-1")  # random nonce
    assert box.decrypt(stored, "mfa:user-1") == "JBSWY3DPEHPK3PXP"
    with pytest.raises(ValueError, match="another row"):
        box.decrypt(stored, "mfa:user-2")
    # Flip one bit of the sealed bytes (editing the last base64 character could touch only its unused bits).
    raw = bytearray(base64.urlsafe_b64decode(stored.split(".", 1)[1]))
    raw[-1] ^= 0x01
    with pytest.raises(ValueError, match="tampered"):
        box.decrypt("v1." + base64.urlsafe_b64encode(bytes(raw)).decode(), "mfa:user-1")
    with pytest.raises(ValueError, match="tampered"):
        SecretBox("j" * 40, "mfa").decrypt(stored, "mfa:user-1")


def test_purposes_derive_different_keys() -> None:
    assert SecretBox("k" * 40, "mfa").mac("x") != SecretBox("k" * 40, "signing-keys").mac("x")


def test_identity_config_refuses_a_short_secret_and_weak_settings() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        IdentityConfig(secret_key="short")
    with pytest.raises(ValueError, match="at least 12"):
        IdentityConfig(secret_key="k" * 40, min_password_length=8)


# --- tiers and keys ----------------------------------------------------------------------------------------


def test_tiers_grow_from_free_to_enterprise_in_every_quota() -> None:
    free, pro, enterprise = TIERS["free"], TIERS["pro"], TIERS["enterprise"]
    for field in (
        "requests_per_minute",
        "max_api_keys",
        "max_users",
        "max_trading_accounts",
        "max_strategies",
    ):
        assert getattr(free, field) < getattr(pro, field) < getattr(enterprise, field), field
    assert quota_of(None) is free
    with pytest.raises(BadInputError, match="unknown tier"):
        quota_of("platinum")


def test_api_key_format_is_parsed_strictly() -> None:
    good = "aitk_" + "0" * 31 + "1_" + "A" * 43
    assert parse_api_key(good) is not None
    for bad in ("aitk_", good[:-1], good.replace("aitk_", "aitx_"), good + "=", "Bearer " + good):
        assert parse_api_key(bad) is None


# --- throttle -----------------------------------------------------------------------------------------


async def test_throttle_delays_grow_exponentially_and_the_window_forgets() -> None:
    clock = TestClock()
    throttle = LoginThrottle(
        MemoryCache(clock), clock, window_s=900, account_after=5, ip_after=100, max_delay_s=900
    )
    acct = account_key("acme", "Pat@acme.io")
    assert acct == account_key("acme", " pat@ACME.io ")
    for _ in range(5):
        assert await throttle.retry_after(acct, "1.2.3.4") == 0
        await throttle.failed(acct, "1.2.3.4")
    assert await throttle.retry_after(acct, "1.2.3.4") == 1
    await throttle.failed(acct, "1.2.3.4")
    assert await throttle.retry_after(acct, "1.2.3.4") == 2
    await throttle.failed(acct, "1.2.3.4")
    assert await throttle.retry_after(acct, "1.2.3.4") == 4
    clock.advance(4)
    assert await throttle.retry_after(acct, "1.2.3.4") == 0
    clock.advance(900)
    await throttle.failed(acct, "1.2.3.4")
    assert await throttle.retry_after(acct, "1.2.3.4") == 0


async def test_throttle_lock_refuses_until_it_ends_or_is_reset() -> None:
    clock = TestClock()
    throttle = LoginThrottle(
        MemoryCache(clock), clock, window_s=900, account_after=5, ip_after=5, max_delay_s=900
    )
    await throttle.lock("acct", 1800)
    assert await throttle.retry_after("acct", None) == 1800
    clock.advance(1000)
    assert await throttle.retry_after("acct", None) == 800
    await throttle.reset("acct")
    assert await throttle.retry_after("acct", None) == 0


async def test_password_hashing_runs_off_the_event_loop() -> None:
    pw = Passwords(PasswordHasher(time_cost=2, memory_cost=8192, parallelism=1, type=Type.ID))
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    await asyncio.gather(*(pw.hash("correct horse battery staple") for _ in range(4)))
    task.cancel()
    assert ticks > 4  # the loop kept running while argon2 worked in threads
