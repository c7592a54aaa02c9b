"""Ed25519 signing keys for offline license tokens (EdDSA JWTs, RFC 8037) and their JWK Set.

Keys live as one PEM file per key id in the keys directory (`settings.license.keys_path`),
mode 0600. The key id starts with its creation time (UTC, microseconds), so the directory
listing alone says which key signs (the newest) and when each older key was retired (when
its successor was created): no manifest to keep in sync between hosts.

A retired key stays published in `/.well-known/jwks.json` until every token it signed has
expired (successor created + token TTL + a restart grace), then `keys prune` may drop it.
Keys are read once at startup (`load_signer`); `keys rotate` takes effect on restart.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import itertools
import json
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from jwt.algorithms import OKPAlgorithm

from config.settings import SettingsError

ALGORITHM = "EdDSA"
KEY_SUFFIX = ".pem"
LOCK_FILE = ".lock"
_KID_TIME = "%Y%m%dT%H%M%S%fZ"
# Processes still running with a retired key keep signing with it until they restart;
# their tokens must stay verifiable, so pruning waits this much longer than the TTL.
RESTART_GRACE = timedelta(days=1)


class KeyFileError(SettingsError):
    """A signing key file or directory cannot be used safely; the message says how to fix it."""


@dataclass(frozen=True, slots=True)
class SigningKey:
    kid: str
    created_at: datetime
    private_key: Ed25519PrivateKey
    path: Path

    def public_jwk(self) -> dict[str, Any]:
        jwk: dict[str, Any] = OKPAlgorithm.to_jwk(self.private_key.public_key(), as_dict=True)
        return {**jwk, "kid": self.kid, "use": "sig", "alg": ALGORITHM}


def _created_at(kid: str) -> datetime:
    return datetime.strptime(kid.split("-", 1)[0], _KID_TIME).replace(tzinfo=UTC)


def _check_private(path: Path) -> None:
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(
            f"license signing key {path} is accessible by group/others (mode "
            f"{stat.S_IMODE(mode):04o}); a private key must be 0600: run `chmod 600 {path}`"
        )


class KeyStore:
    """The keys directory: list, generate, prune. Writers hold an exclusive file lock."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def load(self) -> list[SigningKey]:
        """Every key, oldest first. Refuses group/world-accessible key files."""
        if not self.directory.is_dir():
            return []
        found = []
        for path in sorted(self.directory.glob(f"*{KEY_SUFFIX}")):
            _check_private(path)
            kid = path.name.removesuffix(KEY_SUFFIX)
            try:
                created = _created_at(kid)
                key = serialization.load_pem_private_key(path.read_bytes(), password=None)
            except ValueError as exc:
                raise KeyFileError(f"{path}: not a license signing key ({exc})") from exc
            if not isinstance(key, Ed25519PrivateKey):
                raise KeyFileError(f"{path}: not an Ed25519 private key")
            found.append(SigningKey(kid=kid, created_at=created, private_key=key, path=path))
        return sorted(found, key=lambda k: k.created_at)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Serialise writers (two gateway processes starting at once, a CLI rotate)."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def generate(self, now: datetime | None = None) -> SigningKey:
        """Write a new key (0600, never overwriting) that signs from the next start on."""
        now = now or datetime.now(UTC)
        private_key = Ed25519PrivateKey.generate()
        public_jwk = OKPAlgorithm.to_jwk(private_key.public_key(), as_dict=True)
        kid = f"{now.strftime(_KID_TIME)}-{_thumbprint(public_jwk)[:8]}"
        path = self.directory / f"{kid}{KEY_SUFFIX}"
        pem = private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
        return SigningKey(kid=kid, created_at=_created_at(kid), private_key=private_key, path=path)

    def ensure(self) -> list[SigningKey]:
        """The keys, generating the first one if there is none."""
        with self.locked():
            keys = self.load()
            return keys or [self.generate()]

    def rotate(self) -> SigningKey:
        with self.locked():
            self.load()  # refuse to add to a directory holding an unsafe key
            return self.generate()

    def prunable(self, ttl: timedelta, now: datetime | None = None) -> list[SigningKey]:
        """Retired keys whose every token has expired (successor age > TTL + grace)."""
        now = now or datetime.now(UTC)
        keys = self.load()
        return [
            key
            for key, successor in itertools.pairwise(keys)
            if now >= successor.created_at + ttl + RESTART_GRACE
        ]

    def prune(self, ttl: timedelta, now: datetime | None = None) -> list[SigningKey]:
        with self.locked():
            dropped = self.prunable(ttl, now)
            for key in dropped:
                key.path.unlink()
            return dropped


def _thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 JWK thumbprint (base64url SHA-256 of the canonical public members)."""
    canonical = json.dumps(
        {"crv": jwk["crv"], "kty": jwk["kty"], "x": jwk["x"]}, separators=(",", ":")
    )
    digest = hashlib.sha256(canonical.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


@dataclass(frozen=True, slots=True)
class Signer:
    """What a running gateway signs with (the newest key) and publishes (`jwks_body`: every key)."""

    current: SigningKey
    issuer: str
    ttl: timedelta
    jwks_body: bytes

    def sign(self, claims: dict[str, Any], now: datetime) -> tuple[str, datetime]:
        """A compact EdDSA JWS with `iss`, `iat`, `exp` added; returns (token, expires_at)."""
        expires = now + self.ttl
        payload = {
            **claims,
            "iss": self.issuer,
            "iat": int(now.timestamp()),
            "exp": int(expires.timestamp()),
        }
        token = jwt.encode(
            payload,
            self.current.private_key,
            algorithm=ALGORITHM,
            headers={"kid": self.current.kid},
        )
        return token, expires.replace(microsecond=0)


def build_signer(keys: list[SigningKey], *, issuer: str, ttl: timedelta) -> Signer:
    if not keys:
        raise KeyFileError("no license signing key: run `checkout-gateway keys generate`")
    jwks = {"keys": [key.public_jwk() for key in reversed(keys)]}
    return Signer(
        current=keys[-1],
        issuer=issuer,
        ttl=ttl,
        jwks_body=json.dumps(jwks, separators=(",", ":")).encode(),
    )


def load_signer(directory: Path, *, issuer: str, ttl: timedelta) -> Signer:
    """Read (or on first start create) the keys once; refuses unsafe key files."""
    return build_signer(KeyStore(directory).ensure(), issuer=issuer, ttl=ttl)
