"""BTCPay's webhook signature: `BTCPay-Sig: sha256=<hex HMAC-SHA256 of the raw body>`."""

from __future__ import annotations

import hashlib
import hmac

from providers.errors import WebhookSignatureError

SIGNATURE_HEADER = "btcpay-sig"


def sign_body(secret: str, body: bytes) -> str:
    """The `BTCPay-Sig` header value BTCPay sends for `body`."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def verify_signature(secret: str, body: bytes, header: str | None) -> None:
    """Raise `WebhookSignatureError` unless `header` is BTCPay's HMAC over `body`."""
    if not header:
        raise WebhookSignatureError("missing BTCPay-Sig header")
    scheme, sep, digest = header.strip().partition("=")
    if not sep or scheme.lower() != "sha256":
        raise WebhookSignatureError("BTCPay-Sig is not of the form sha256=<hex>")
    try:
        got = bytes.fromhex(digest)
    except ValueError as exc:
        raise WebhookSignatureError("BTCPay-Sig digest is not hex") from exc
    want = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).digest()
    if not hmac.compare_digest(got, want):
        raise WebhookSignatureError("BTCPay-Sig does not match the body")
