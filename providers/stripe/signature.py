"""Stripe's webhook signature, checked with the SDK on the exact bytes before any parsing.

`Stripe-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<body>">`, with a replay window.
"""

from __future__ import annotations

import json
import time
from typing import Any

import stripe

from providers.errors import WebhookPayloadError, WebhookSignatureError

SIGNATURE_HEADER = "stripe-signature"
SIGNATURE_TOLERANCE_SECONDS = 300


def _check_timestamp(signature: str) -> None:
    # Checked first and strictly: the SDK takes `t=<ts>=x` and would leave us an int()
    # of garbage; a far-future stamp would defeat the replay window.
    stamps = [p.partition("=")[2] for p in signature.split(",") if p.startswith("t=")]
    if len(stamps) != 1 or not stamps[0].isascii() or not stamps[0].isdigit():
        raise WebhookSignatureError("malformed Stripe-Signature timestamp")
    if int(stamps[0]) > time.time() + SIGNATURE_TOLERANCE_SECONDS:
        raise WebhookSignatureError("Stripe-Signature timestamp is in the future")


def verified_event(body: bytes, signature: str, secret: str) -> Any:
    """The event `body` as plain JSON, once `signature` is Stripe's over these exact bytes.

    Raises `WebhookSignatureError` (nothing parsed) or `WebhookPayloadError` (signed, not JSON).
    """
    if not signature.strip():
        raise WebhookSignatureError("missing Stripe-Signature header")
    _check_timestamp(signature)
    try:
        text = body.decode("utf-8")
        stripe.WebhookSignature.verify_header(
            text, signature, secret, tolerance=SIGNATURE_TOLERANCE_SECONDS
        )
    except stripe.SignatureVerificationError as exc:
        raise WebhookSignatureError(f"Stripe signature rejected: {exc.user_message}") from exc
    except UnicodeDecodeError as exc:
        # Stripe signs UTF-8 text; these bytes cannot be what it signed.
        raise WebhookSignatureError("webhook body is not UTF-8") from exc
    except (TypeError, ValueError) as exc:
        # hmac.compare_digest refuses non-ASCII signature strings: a forged header.
        raise WebhookSignatureError("malformed Stripe-Signature header") from exc
    # A plain dict, not `stripe.Event`: a StripeObject is not a dict since stripe v15.
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise WebhookPayloadError(f"Stripe webhook is not JSON: {exc}") from exc
