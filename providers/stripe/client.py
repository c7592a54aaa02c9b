"""Stripe SDK plumbing: the httpx client we hand the SDK, error translation, and the
session expiry + idempotency key of a (retried) create.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import httpx
import stripe

from providers.base import CheckoutRequest
from providers.errors import ProviderRejected, ProviderUnavailable

logger = logging.getLogger(__name__)

# Statuses that mean "try again later": Stripe's own retry rules (5xx, 409 lock timeouts, 429).
_RETRIABLE_STATUS = frozenset({409, 429})


class GatewayHTTPXClient(stripe.HTTPXClient):
    """The SDK's httpx client with two fixes: an optional injected transport, and `content=`.

    Tests hand the provider the fake Stripe app's in-process transport, so the real SDK code
    path (form encoding, headers, retries, error parsing) runs with no socket and no patching.
    HTTPXClient has no transport hook; its `__init__` builds an `AsyncClient` that has opened
    nothing yet, which we replace before any request.

    stripe 16.1 passes the encoded form as `data=<str>`, which httpx 0.28 deprecates with a
    DeprecationWarning on every request (fatal under our warnings-as-errors tests); the body is
    already encoded, so `content=` sends the identical bytes.
    """

    def __init__(self, timeout: float, transport: httpx.AsyncBaseTransport | None = None) -> None:
        super().__init__(timeout=timeout)
        if transport is not None:
            self._client_async = httpx.AsyncClient(transport=transport)

    def _get_request_args_kwargs(
        self, method: str, url: str, headers: Mapping[str, str], post_data: Any
    ) -> list[Any]:
        args, kwargs = super()._get_request_args_kwargs(method, url, headers, None)
        kwargs.pop("data", None)
        if post_data:
            kwargs["content"] = post_data
        return [args, kwargs]


def unavailable_or_rejected(
    exc: stripe.StripeError, action: str
) -> ProviderUnavailable | ProviderRejected:
    status = exc.http_status
    if (
        isinstance(exc, stripe.APIConnectionError | stripe.RateLimitError)
        or status is None
        or status >= 500
        or status in _RETRIABLE_STATUS
    ):
        return ProviderUnavailable(f"Stripe {action} failed (retriable, HTTP {status}): {exc}")
    return ProviderRejected(f"Stripe {action} refused (HTTP {status}): {exc.user_message or exc}")


# Stripe forgets idempotency keys after 24 hours ("Keys are eligible to be removed
# automatically after they're at least 24 hours old", docs.stripe.com/api/idempotent_requests)
# and checks 30 min <= expires_at - now <= 24 h on its own clock. A minute is kept clear of
# both ends for clock skew; the extra 5 minutes make every retry window at least 5 min long.
_MIN_LIFETIME = 36 * 60
_MAX_LIFETIME = 24 * 3600 - 60
_MIN_LEFT = 31 * 60


def expiry(req: CheckoutRequest, minutes: int, now: float) -> tuple[int, str]:
    """`expires_at` and the idempotency key for a create made at `now`.

    Retries must send identical bytes under one key, or Stripe refuses the key. So the
    expiry is anchored on the order's creation and only moves in steps: within one step a
    retry is byte-identical (Stripe replays the first session); once the anchored expiry
    would leave less than 31 minutes, the next step starts with a fresh expiry *and* a fresh
    key, so a retry hours later (or past Stripe's 24 h key memory) still gets a payable
    session instead of a permanent 400.
    """
    lifetime = min(max(minutes * 60, _MIN_LIFETIME), _MAX_LIFETIME)
    if req.created_at is None:
        logger.warning("order %s: no created_at, session expiry anchored on now", req.order_id)
        return int(now) + lifetime, req.idempotency_key
    created = int(req.created_at.timestamp())
    step = lifetime - _MIN_LEFT  # >= 5 min
    generation = max(0, int(now) - created) // step
    expires_at = created + generation * step + lifetime
    key = req.idempotency_key if generation == 0 else f"{req.idempotency_key}:{generation}"
    return expires_at, key
