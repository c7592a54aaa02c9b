"""Signed license tokens: EdDSA JWTs that verify offline against the published JWK Set,
with the stand-alone verifier (clients/python/checkout_license.py) and with plain PyJWT,
and that fail for every kind of tampering, the wrong product/machine, expiry, another
key, `alg: none` and HS256 keyed with the public key. Key rotation keeps old tokens valid.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import stat
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from checkout_license import LicenseError, WrongMachine, verify_license
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from config.catalog import Catalog
from config.settings import Settings
from gateway.app import create_app
from gateway.licenses.signing import KeyFileError, KeyStore, load_signer
from tests.support.app import running
from tests.support.license import new_license

SettingsFactory = Callable[..., Settings]
ISSUER = "http://gateway.test"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _app(db_url: str, settings_factory: SettingsFactory, catalog: Catalog, **kw: Any) -> Any:
    return create_app(
        settings_factory(database_url=db_url, **kw),
        catalog=catalog,
        providers={},
        run_migrations=False,
        run_mailer=False,
    )


async def _activated(client: httpx.AsyncClient, catalog: Catalog, fpr: str = "m1") -> Any:
    lic = await new_license(catalog)
    resp = await client.post("/licenses/activate", json={"key": lic.key, "fingerprint": fpr})
    assert resp.status_code == 201, resp.text
    return lic, resp.json()


async def test_token_verifies_offline_with_the_verifier_and_with_plain_pyjwt(
    db_url: str, settings_factory: SettingsFactory, catalog: Catalog
) -> None:
    app = _app(db_url, settings_factory, catalog)
    async with running(app) as client:
        lic, body = await _activated(client, catalog)
        jwks_resp = await client.get("/.well-known/jwks.json")
    jwks = jwks_resp.json()
    token = body["token"]

    claims = verify_license(token, jwks, fingerprint="m1", product="pro", issuer=ISSUER)

    assert jwks_resp.headers["content-type"] == "application/json"
    assert jwks_resp.headers["access-control-allow-origin"] == "*"
    [jwk] = jwks["keys"]
    assert (jwk["kty"], jwk["crv"], jwk["alg"], jwk["use"]) == ("OKP", "Ed25519", "EdDSA", "sig")
    assert "d" not in jwk  # never the private part
    assert jwt.get_unverified_header(token) == {"alg": "EdDSA", "kid": jwk["kid"], "typ": "JWT"}
    assert claims["sub"] == str(lic.id)
    assert lic.key not in json.dumps(claims)
    assert (claims["iss"], claims["aud"], claims["fpr"]) == (ISSUER, "pro", "m1")
    assert (claims["tier"], claims["addons"], claims["seats"]) == ("pro", ["advanced-models"], 3)
    assert claims["exp"] - claims["iat"] == 30 * 24 * 3600  # default TTL: 30 days
    expires = datetime.fromisoformat(body["token_expires_at"].replace("Z", "+00:00"))
    assert int(expires.timestamp()) == claims["exp"]

    # any JOSE library: plain PyJWT with the JWK from the set
    key = jwt.PyJWK(jwk).key
    plain = jwt.decode(token, key, algorithms=["EdDSA"], audience="pro", issuer=ISSUER)
    assert plain == claims


async def test_token_ttl_is_configurable(
    db_url: str, settings_factory: SettingsFactory, catalog: Catalog
) -> None:
    app = _app(db_url, settings_factory, catalog, license={"token_ttl_days": 7})
    async with running(app) as client:
        _, body = await _activated(client, catalog)

    claims = jwt.decode(body["token"], options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 7 * 24 * 3600


async def test_tampered_wrong_product_machine_or_key_is_refused(
    db_url: str, settings_factory: SettingsFactory, catalog: Catalog
) -> None:
    app = _app(db_url, settings_factory, catalog)
    async with running(app) as client:
        _, body = await _activated(client, catalog)
        jwks = (await client.get("/.well-known/jwks.json")).json()
    token: str = body["token"]
    header, payload, signature = token.split(".")

    # one changed byte in the signature, in the payload, in the header
    flipped_sig = signature[:10] + ("A" if signature[10] != "A" else "B") + signature[11:]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    forged_payload = _b64(json.dumps({**claims, "seats": 30}).encode())
    for bad in (
        f"{header}.{payload}.{flipped_sig}",
        f"{header}.{forged_payload}.{signature}",
        f"{header[:-1]}{'A' if header[-1] != 'A' else 'B'}.{payload}.{signature}",
        token[:-1],
    ):
        with pytest.raises(LicenseError):
            verify_license(bad, jwks, fingerprint="m1", product="pro")

    with pytest.raises(LicenseError, match="not for product 'enterprise'"):
        verify_license(token, jwks, fingerprint="m1", product="enterprise")
    with pytest.raises(WrongMachine):
        verify_license(token, jwks, fingerprint="another-machine", product="pro")
    with pytest.raises(LicenseError):
        verify_license(token, jwks, fingerprint="m1", product="pro", issuer="https://evil.test")

    other = Ed25519PrivateKey.generate().public_key()
    pem = other.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with pytest.raises(LicenseError, match="Signature verification failed"):
        verify_license(token, pem, fingerprint="m1", product="pro")
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, other, algorithms=["EdDSA"], audience="pro")
    # the genuine token passes the same checks (so the failures above are the tampering)
    assert verify_license(token, jwks, fingerprint="m1", product="pro")["fpr"] == "m1"


async def test_expired_token_is_refused(
    db_url: str, settings_factory: SettingsFactory, catalog: Catalog
) -> None:
    settings = settings_factory(database_url=db_url)
    signer = load_signer(
        settings.license.keys_path(settings.data_dir), issuer=ISSUER, ttl=timedelta(days=30)
    )
    jwks = json.loads(signer.jwks_body)
    claims = {"sub": "1", "aud": "pro", "tier": "pro", "addons": [], "seats": 3, "fpr": "m1"}
    old, _ = signer.sign(claims, datetime.now(UTC) - timedelta(days=30, seconds=5))
    fresh, _ = signer.sign(claims, datetime.now(UTC) - timedelta(days=29))

    with pytest.raises(LicenseError, match="expired"):
        verify_license(old, jwks, fingerprint="m1", product="pro")
    with pytest.raises(jwt.ExpiredSignatureError):
        jwt.decode(old, jwt.PyJWK(jwks["keys"][0]).key, algorithms=["EdDSA"], audience="pro")
    assert verify_license(fresh, jwks, fingerprint="m1", product="pro")["sub"] == "1"
    # a clock a few seconds slow is tolerated only when the app asks for leeway
    assert verify_license(old, jwks, fingerprint="m1", product="pro", leeway=60)["sub"] == "1"


async def test_alg_none_and_hs256_keyed_with_the_public_key_are_refused(
    db_url: str, settings_factory: SettingsFactory, catalog: Catalog
) -> None:
    app = _app(db_url, settings_factory, catalog)
    async with running(app) as client:
        _, body = await _activated(client, catalog)
        jwks = (await client.get("/.well-known/jwks.json")).json()
    [jwk] = jwks["keys"]
    claims = jwt.decode(body["token"], options={"verify_signature": False})
    claims["seats"] = 999
    payload = _b64(json.dumps(claims).encode())

    none_token = f"{_b64(json.dumps({'alg': 'none', 'kid': jwk['kid']}).encode())}.{payload}."
    public = jwt.PyJWK(jwk).key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    hs_header = _b64(json.dumps({"alg": "HS256", "kid": jwk["kid"], "typ": "JWT"}).encode())
    secrets = [public, json.dumps(jwk).encode(), base64.urlsafe_b64decode(jwk["x"] + "==")]
    hs_tokens = []
    for secret in secrets:
        signing_input = f"{hs_header}.{payload}".encode()
        mac = hmac.new(secret, signing_input, hashlib.sha256).digest()
        hs_tokens.append(f"{hs_header}.{payload}.{_b64(mac)}")

    for forged in [none_token, *hs_tokens]:
        with pytest.raises(LicenseError, match="refused signing algorithm"):
            verify_license(forged, jwks, fingerprint="m1", product="pro")
        with pytest.raises(LicenseError):
            verify_license(forged, public, fingerprint="m1", product="pro")
        with pytest.raises(jwt.InvalidAlgorithmError):
            jwt.decode(forged, jwt.PyJWK(jwk).key, algorithms=["EdDSA"], audience="pro")


async def test_rotation_keeps_old_tokens_valid_and_new_tokens_use_the_new_kid(
    db_url: str, settings_factory: SettingsFactory, catalog: Catalog
) -> None:
    settings = settings_factory(database_url=db_url)
    store = KeyStore(settings.license.keys_path(settings.data_dir))
    first_app = _app(db_url, settings_factory, catalog)
    async with running(first_app) as client:
        lic, body = await _activated(client, catalog)
    old_token = body["token"]

    new_key = store.rotate()  # what `checkout-gateway keys rotate` does; then a restart
    second_app = _app(db_url, settings_factory, catalog)
    async with running(second_app) as client:
        refreshed = await client.post("/licenses/token", json={"key": lic.key, "fingerprint": "m1"})
        jwks = (await client.get("/.well-known/jwks.json")).json()

    new_token = refreshed.json()["token"]
    old_kid = jwt.get_unverified_header(old_token)["kid"]
    assert jwt.get_unverified_header(new_token)["kid"] == new_key.kid != old_kid
    assert refreshed.json()["kid"] == new_key.kid
    assert [k["kid"] for k in jwks["keys"]] == [new_key.kid, old_kid]
    for token in (old_token, new_token):
        assert verify_license(token, jwks, fingerprint="m1", product="pro")["sub"] == str(lic.id)

    # the old key is published until its last token expired (+ restart grace), then pruned
    ttl = timedelta(days=settings.license.token_ttl_days)
    assert store.prune(ttl) == []
    assert store.prune(ttl, now=datetime.now(UTC) + ttl) == []
    dropped = store.prune(ttl, now=datetime.now(UTC) + ttl + timedelta(days=1, minutes=1))
    assert [k.kid for k in dropped] == [old_kid]
    assert [k.kid for k in store.load()] == [new_key.kid]
    # after pruning, an old token (long expired by then) no longer finds its key
    third = load_signer(store.directory, issuer=ISSUER, ttl=ttl)
    with pytest.raises(LicenseError, match="unknown signing key"):
        verify_license(old_token, json.loads(third.jwks_body), fingerprint="m1", product="pro")


def test_first_start_creates_one_private_key_readable_only_by_the_owner(
    settings_factory: SettingsFactory, catalog: Catalog, tmp_path: Path
) -> None:
    settings = settings_factory(database_url=f"sqlite://{tmp_path / 'x.sqlite3'}")
    keys_dir = settings.license.keys_path(settings.data_dir)
    assert not keys_dir.exists()

    create_app(settings, catalog=catalog, providers={})
    create_app(settings, catalog=catalog, providers={})  # a second start adds nothing

    [pem] = list(keys_dir.glob("*.pem"))
    assert stat.S_IMODE(pem.stat().st_mode) == 0o600
    assert stat.S_IMODE(keys_dir.stat().st_mode) == 0o700
    assert b"PRIVATE KEY" in pem.read_bytes()


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644])
def test_group_or_world_readable_key_file_stops_startup_with_a_clear_message(
    mode: int, settings_factory: SettingsFactory, catalog: Catalog, tmp_path: Path
) -> None:
    settings = settings_factory(database_url=f"sqlite://{tmp_path / 'x.sqlite3'}")
    [key] = KeyStore(settings.license.keys_path(settings.data_dir)).ensure()
    key.path.chmod(mode)

    with pytest.raises(KeyFileError) as err:
        create_app(settings, catalog=catalog, providers={})

    assert f"{key.path}" in str(err.value)
    assert f"mode {mode:04o}" in str(err.value)
    assert f"chmod 600 {key.path}" in str(err.value)


def test_a_key_file_that_is_not_a_key_is_refused(
    settings_factory: SettingsFactory, catalog: Catalog, tmp_path: Path
) -> None:
    settings = settings_factory(database_url=f"sqlite://{tmp_path / 'x.sqlite3'}")
    keys_dir = settings.license.keys_path(settings.data_dir)
    keys_dir.mkdir(parents=True)
    junk = keys_dir / "20260101T000000000000Z-junk.pem"
    junk.write_text("not a key")
    junk.chmod(0o600)

    with pytest.raises(KeyFileError, match="not a license signing key"):
        create_app(settings, catalog=catalog, providers={})


@pytest.mark.slow
def test_verifier_is_stand_alone(tmp_path: Path) -> None:
    """Sellers copy one file: it must not import any of the gateway's packages."""
    verifier = Path(verify_license.__code__.co_filename)
    probe = (
        "import sys, checkout_license\n"
        "ours = {'gateway', 'config', 'providers', 'sandbox', 'tests'}\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ours))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        env={"PYTHONPATH": str(verifier.parent), "PATH": os.environ.get("PATH", "")},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert verifier.name == "checkout_license.py"
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
