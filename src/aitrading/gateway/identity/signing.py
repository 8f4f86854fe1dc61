"""Signing keys of access tokens: Ed25519 key pairs in the database, rotation, the JWKS, a public-key cache.

The newest unretired key signs. Rotation creates a key and retires the others; a retired key stays in the
JWKS and keeps verifying for `verify_window_s` (the access-token lifetime plus leeway), so tokens it signed
live out their 15 minutes. Private keys are stored encrypted (`SecretBox`, the kid as associated data).

The verifier never touches the database per request: public keys sit in a dict by `kid`. An unknown `kid`
(another gateway replica rotated) reloads the table, at most once per `reload_min_interval_s`, so random
`kid`s cannot turn into a database flood.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

import sqlalchemy as sa
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from aitrading.common.clock import Clock
from aitrading.common.errors import OperationalError
from aitrading.gateway.identity.crypto import SecretBox
from aitrading.storage.oltp import Database
from aitrading.storage.oltp.models_identity import SigningKey

__all__ = ["ALGORITHM", "PublicKey", "SigningKeys", "jwk_thumbprint"]

ALGORITHM: Final = "EdDSA"
_LOCK_KEY: Final = 0x41495452_4B455953  # "AITR" "KEYS": serialises rotations across gateway replicas


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def jwk_thumbprint(key: Ed25519PublicKey) -> str:
    """Return the RFC 7638 thumbprint of the key's JWK (used as its `kid`)."""
    members = {"crv": "Ed25519", "kty": "OKP", "x": _b64(_raw_public(key))}
    canonical = json.dumps(members, sort_keys=True, separators=(",", ":")).encode()
    return _b64(hashlib.sha256(canonical).digest())


@dataclass(frozen=True, slots=True)
class PublicKey:
    """A verification key and the time it stopped signing (None while it is the active key)."""

    kid: str
    key: Ed25519PublicKey
    created_at: datetime
    retired_at: datetime | None

    def jwk(self) -> dict[str, str]:
        return {
            "kty": "OKP",
            "crv": "Ed25519",
            "x": _b64(_raw_public(self.key)),
            "kid": self.kid,
            "use": "sig",
            "alg": ALGORITHM,
        }


class SigningKeys:
    """The gateway's signing keys: the active one signs; any that may have live tokens verifies."""

    def __init__(
        self,
        db: Database,
        box: SecretBox,
        clock: Clock,
        *,
        verify_window_s: int,
        max_age_s: int,
        reload_min_interval_s: float = 5.0,
    ) -> None:
        self._db = db
        self._box = box
        self._clock = clock
        self._window = timedelta(seconds=verify_window_s)
        self._max_age = timedelta(seconds=max_age_s)
        self._reload_every_ns = int(reload_min_interval_s * 1e9)
        self._public: dict[str, PublicKey] = {}
        self._active: tuple[str, Ed25519PrivateKey, datetime] | None = None
        self._last_reload_ns: int | None = None
        self._lock = asyncio.Lock()

    # ----------------------------------------------------------------- loading and rotation

    async def load(self) -> None:
        """Read every key that may still verify, and decrypt the active one."""
        now = self._clock.utcnow()
        async with self._db.session() as session:
            rows = list(
                await session.scalars(
                    sa.select(SigningKey).where(
                        sa.or_(SigningKey.retired_at.is_(None), SigningKey.retired_at > now - self._window)
                    )
                )
            )
        public: dict[str, PublicKey] = {}
        active: SigningKey | None = None
        for row in rows:
            key = serialization.load_pem_public_key(row.public_key.encode())
            if not isinstance(key, Ed25519PublicKey):
                raise OperationalError(f"signing key {row.kid} is not an Ed25519 key")
            public[row.kid] = PublicKey(row.kid, key, row.created_at, row.retired_at)
            if row.retired_at is None and (active is None or row.created_at > active.created_at):
                active = row
        self._public = public
        self._last_reload_ns = self._clock.monotonic_ns()
        if active is None:
            self._active = None
            return
        pem = self._box.open(active.private_key, f"signing-key:{active.kid}", f"signing key {active.kid}")
        private = serialization.load_pem_private_key(pem.encode(), password=None)
        if not isinstance(private, Ed25519PrivateKey):
            raise OperationalError(f"signing key {active.kid} is not an Ed25519 key")
        self._active = (active.kid, private, active.created_at)

    async def ensure_active(self) -> str:
        """Make sure a signing key exists and is younger than the maximum age; return the active kid."""
        if self._active is None:
            await self.load()
        if self._active is None or self._clock.utcnow() - self._active[2] >= self._max_age:
            return await self.rotate(only_if_due=True)
        return self._active[0]

    async def rotate(self, *, only_if_due: bool = False) -> str:
        """Create a new signing key and retire the others; return the new kid.

        With `only_if_due`, another process that rotated meanwhile wins and its key is kept.
        """
        async with self._lock:
            now = self._clock.utcnow()
            async with self._db.session() as session:
                if session.get_bind().dialect.name == "postgresql":
                    await session.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})
                newest = await session.scalar(
                    sa.select(SigningKey)
                    .where(SigningKey.retired_at.is_(None))
                    .order_by(SigningKey.created_at.desc())
                    .limit(1)
                )
                if only_if_due and newest is not None and now - newest.created_at < self._max_age:
                    kid = newest.kid
                else:
                    private = Ed25519PrivateKey.generate()
                    kid = jwk_thumbprint(private.public_key())
                    pem = private.private_bytes(
                        serialization.Encoding.PEM,
                        serialization.PrivateFormat.PKCS8,
                        serialization.NoEncryption(),
                    ).decode()
                    public_pem = (
                        private.public_key()
                        .public_bytes(
                            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
                        )
                        .decode()
                    )
                    await session.execute(
                        sa.update(SigningKey).where(SigningKey.retired_at.is_(None)).values(retired_at=now)
                    )
                    session.add(
                        SigningKey(
                            id=uuid.uuid4(),
                            kid=kid,
                            algorithm=ALGORITHM,
                            public_key=public_pem,
                            private_key=self._box.encrypt(pem, f"signing-key:{kid}"),
                            created_at=now,
                        )
                    )
            await self.load()
            return kid

    # ----------------------------------------------------------------- use

    async def signer(self) -> tuple[str, Ed25519PrivateKey]:
        """Return (kid, private key) of the active key, rotating first if it is due."""
        active = self._active
        if active is None or self._clock.utcnow() - active[2] >= self._max_age:
            await self.ensure_active()
            active = self._active
        if active is None:
            raise OperationalError("no signing key could be loaded or created")
        return active[0], active[1]

    def cached_key(self, kid: str) -> Ed25519PublicKey | None:
        """Return the cached verification key for `kid` if it may still verify (no I/O)."""
        entry = self._public.get(kid)
        if entry is None:
            return None
        if entry.retired_at is not None and self._clock.utcnow() > entry.retired_at + self._window:
            return None
        return entry.key

    async def verification_key(self, kid: str) -> Ed25519PublicKey | None:
        """Return the verification key for `kid`, reloading (rate-limited) when it is not cached."""
        key = self.cached_key(kid)
        if key is not None:
            return key
        last = self._last_reload_ns
        if last is not None and self._clock.monotonic_ns() - last < self._reload_every_ns:
            return None
        async with self._lock:
            if self._last_reload_ns == last:
                await self.load()
        return self.cached_key(kid)

    def jwks(self) -> dict[str, Any]:
        """Return the JSON Web Key Set of every key that may still verify."""
        now = self._clock.utcnow()
        keys = [
            k.jwk()
            # The active key first, then retired ones, most recently retired first.
            for k in sorted(
                self._public.values(), key=lambda k: (k.retired_at is None, k.retired_at or now), reverse=True
            )
            if k.retired_at is None or now <= k.retired_at + self._window
        ]
        return {"keys": keys}

    @property
    def active_kid(self) -> str | None:
        return None if self._active is None else self._active[0]
