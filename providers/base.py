"""The provider protocol and the request/response types of a checkout."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable

from providers.events import PaymentEvent, ProviderName


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckoutRequest:
    order_id: str
    product_id: str
    product_name: str
    description: str
    amount_minor: int
    currency: str
    buyer_email: str
    # Where the provider sends the buyer afterwards (our order status page).
    success_url: str
    cancel_url: str
    # Where the provider posts notifications (used by legacy BTCPay IPN).
    notification_url: str
    # Stable per order so a retried create never makes a second payable checkout.
    idempotency_key: str
    # When the order was created. Providers derive time-based fields (Stripe `expires_at`)
    # from it, so a retry under the same idempotency key sends the very same request.
    created_at: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckoutSession:
    provider_ref: str
    checkout_url: str
    expires_at: datetime | None = None


@runtime_checkable
class PaymentProvider(Protocol):
    """One payment provider. Implementations live one per module beside this file."""

    name: ProviderName

    async def create_checkout(self, req: CheckoutRequest) -> CheckoutSession:
        """Create a hosted checkout for `req` and return where to send the buyer.

        Raises `ProviderUnavailable` (retriable) or `ProviderRejected` (permanent).
        """
        ...

    async def parse_webhook(self, body: bytes, headers: Mapping[str, str]) -> list[PaymentEvent]:
        """Verify the signature over the exact `body` bytes, then normalise.

        Raises `WebhookSignatureError` before anything is parsed if verification fails,
        `WebhookPayloadError` for a verified but unusable payload, and
        `ProviderUnavailable` if a re-fetch needed to trust the event failed. `headers`
        keys are lower-case. May call the provider's API (BTCPay settle events carry no
        amount).
        """
        ...

    async def fetch_status(self, provider_ref: str) -> PaymentEvent | None:
        """Ask the provider for the current state of a checkout (for reconciliation).

        Returns None when there is nothing to act on yet.
        """
        ...

    async def aclose(self) -> None:
        """Release HTTP clients and threads."""
        ...


@runtime_checkable
class UnsignedNotifications(Protocol):
    """An optional capability: a provider whose notifications are unsigned (legacy BTCPay IPN).

    Each one costs a signed provider call to trust, so the gateway asks first which checkout
    a body claims to be about and drops those it never created, before any call is made.
    Check for it with `isinstance(provider, UnsignedNotifications)`.
    """

    def unverified_ref(self, body: bytes) -> str | None:
        """The checkout id `body` claims to be about (unverified), or None if it names none."""
        ...
