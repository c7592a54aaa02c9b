"""Verify a checkout-gateway license token offline, in the seller's own app.

Stand-alone: copy this one file into your app; it needs only PyJWT with its crypto extra
(`pip install "pyjwt[crypto]"`). The gateway signs tokens with EdDSA (Ed25519, RFC 8037)
and publishes its public keys at `<gateway>/.well-known/jwks.json`; ship a copy of that
JWK Set with your app (or cache it) and no network is needed to check a license.

    claims = verify_license(token, jwks, fingerprint=this_machine, product="pro")
    claims["tier"], claims["addons"], claims["exp"]

Every failure raises `LicenseError` (or a subclass) with a plain-English message.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

__all__ = ["LicenseError", "WrongMachine", "verify_license"]

# Only EdDSA: never "none", never an HMAC algorithm keyed with the public key.
ALGORITHMS = ["EdDSA"]
REQUIRED = ["exp", "iat", "iss", "sub", "aud", "fpr"]


class LicenseError(Exception):
    """The token is not a valid license for this product (bad signature, expired, ...)."""


class WrongMachine(LicenseError):
    """The token is genuine but was issued to another machine's fingerprint."""


KeySource = Mapping[str, Any] | str | bytes | Ed25519PublicKey


def _keys(source: KeySource) -> dict[str | None, Ed25519PublicKey]:
    """kid -> public key, from a JWK Set, one JWK, their JSON text, a PEM, or a key object."""
    if isinstance(source, Ed25519PublicKey):
        return {None: source}
    if isinstance(source, bytes):
        source = source.decode()
    if isinstance(source, str):
        text = source.strip()
        if text.startswith("-----BEGIN"):
            key = load_pem_public_key(text.encode())
            if not isinstance(key, Ed25519PublicKey):
                raise LicenseError("the public key is not an Ed25519 key")
            return {None: key}
        try:
            source = json.loads(text)
        except ValueError as exc:
            raise LicenseError("the key is neither a PEM public key nor JWK JSON") from exc
    if not isinstance(source, Mapping):
        raise LicenseError("the key must be a JWK Set, a JWK, a PEM or an Ed25519 public key")
    jwks = source.get("keys", [source])
    found: dict[str | None, Ed25519PublicKey] = {}
    for jwk in jwks:
        if jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519":
            continue  # another kind of key: not one the gateway signs with
        key = jwt.PyJWK(dict(jwk), algorithm="EdDSA").key
        if isinstance(key, Ed25519PublicKey):
            found[jwk.get("kid")] = key
    if not found:
        raise LicenseError("no Ed25519 public key in the JWK Set")
    return found


def verify_license(
    token: str,
    jwks_or_public_key: KeySource,
    fingerprint: str,
    product: str,
    *,
    issuer: str | None = None,
    leeway: float = 0,
) -> dict[str, Any]:
    """The token's claims if it is a genuine, unexpired license for `product` issued to
    this machine's `fingerprint` (and by `issuer`, when given); raises `LicenseError`.

    `leeway` (seconds) tolerates a machine clock that runs slightly fast or slow.
    """
    keys = _keys(jwks_or_public_key)
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise LicenseError(f"not a license token: {exc}") from exc
    if header.get("alg") not in ALGORITHMS:
        raise LicenseError(f"refused signing algorithm {header.get('alg')!r}; expected EdDSA")
    kid = header.get("kid")
    key = keys.get(kid) or (keys.get(None) if len(keys) == 1 else None)
    if key is None:
        raise LicenseError(f"unknown signing key {kid!r}: refresh the gateway's JWK Set")
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=ALGORITHMS,
            audience=product,
            issuer=issuer,
            leeway=leeway,
            options={"require": REQUIRED, "verify_iss": issuer is not None},
        )
    except jwt.ExpiredSignatureError as exc:
        raise LicenseError("the license token has expired: refresh it online") from exc
    except jwt.InvalidAudienceError as exc:
        raise LicenseError(f"the license is not for product {product!r}") from exc
    except jwt.PyJWTError as exc:
        raise LicenseError(f"invalid license token: {exc}") from exc
    if claims["fpr"] != fingerprint:
        raise WrongMachine("the license token was issued to another machine")
    return claims
