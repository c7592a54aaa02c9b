"""Stripe Checkout ("Pay with Card") through the official SDK's `StripeClient`.

The client is built per provider from settings (never the global `stripe.api_key`) and talks
over the SDK's httpx client with the `*_async` methods. SDK errors are translated inside
this package (here, in `events` and `signature`); nothing above it sees a `stripe` exception
or a `StripeObject`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import httpx
import stripe
from stripe.params.checkout import (
    SessionCreateParams,
    SessionCreateParamsLineItemPriceDataProductData,
)

from config.money import MoneyError, normalize_currency
from config.settings import StripeSettings
from providers.base import CheckoutRequest, CheckoutSession
from providers.errors import ProviderRejected, WebhookPayloadError
from providers.events import EventSubject, Ignored, PaymentEvent, ProviderName
from providers.stripe.client import GatewayHTTPXClient, expiry, unavailable_or_rejected
from providers.stripe.events import StripeEvents, at, settlement
from providers.stripe.money import to_stripe
from providers.stripe.payloads import EventEnvelope, Session, is_stripe_id, parse
from providers.stripe.signature import SIGNATURE_HEADER, verified_event

logger = logging.getLogger(__name__)

SDK_API_VERSION: str = stripe._api_version._ApiVersion.CURRENT


class StripeProvider:
    name = ProviderName.STRIPE

    def __init__(
        self, settings: StripeSettings, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        if settings.secret_key is None or settings.webhook_secret is None:
            raise ValueError("StripeProvider needs secret_key and webhook_secret")
        self._settings = settings
        api_key = settings.secret_key.get_secret_value()
        self._livemode = api_key.startswith(("sk_live_", "rk_live_"))
        self._webhook_secret = settings.webhook_secret.get_secret_value()
        self._http = GatewayHTTPXClient(settings.timeout_seconds, transport)
        self._seen_versions: set[Any] = set()
        self._client = stripe.StripeClient(
            api_key,
            base_addresses={"api": settings.api_base},
            max_network_retries=settings.max_network_retries,
            http_client=self._http,
        )
        self._events = StripeEvents(self._client)

    # -- checkout -----------------------------------------------------------------------

    async def create_checkout(self, req: CheckoutRequest) -> CheckoutSession:
        try:
            currency = normalize_currency(req.currency)
            unit_amount = to_stripe(req.amount_minor, currency)
        except MoneyError as exc:
            raise ProviderRejected(f"Stripe cannot charge {req.currency!r}: {exc}") from exc
        if req.amount_minor <= 0:
            raise ProviderRejected(f"amount must be positive, got {req.amount_minor}")
        metadata = {"order_id": req.order_id}
        product: SessionCreateParamsLineItemPriceDataProductData = {"name": req.product_name}
        if req.description:
            product["description"] = req.description
        params: SessionCreateParams = {
            "mode": "payment",
            "line_items": [
                {
                    "price_data": {
                        "currency": currency.lower(),
                        "unit_amount": unit_amount,
                        "product_data": product,
                    },
                    "quantity": 1,
                }
            ],
            "customer_email": req.buyer_email,
            # For the seller's dashboard only: anyone can set it on a Payment Link, so the
            # webhook side trusts `metadata.order_id` alone.
            "client_reference_id": req.order_id,
            "metadata": metadata,
            "payment_intent_data": {"metadata": metadata},
            # Unchanged: our status page is keyed by order and never fulfils on the redirect,
            # so `?session_id={CHECKOUT_SESSION_ID}` would carry nothing we would trust.
            "success_url": req.success_url,
            "cancel_url": req.cancel_url,
        }
        key = req.idempotency_key
        if self._settings.session_expires_minutes is not None:
            params["expires_at"], key = expiry(
                req, self._settings.session_expires_minutes, time.time()
            )
        try:
            session = await self._client.v1.checkout.sessions.create_async(
                params, options={"idempotency_key": key}
            )
        except stripe.StripeError as exc:
            raise unavailable_or_rejected(exc, "create checkout session") from exc
        if not session.url:
            raise ProviderRejected(f"Stripe returned session {session.id} without a URL")
        logger.info("stripe checkout session %s created for order %s", session.id, req.order_id)
        return CheckoutSession(
            provider_ref=session.id, checkout_url=session.url, expires_at=at(session.expires_at)
        )

    # -- webhooks -----------------------------------------------------------------------

    async def parse_webhook(self, body: bytes, headers: Mapping[str, str]) -> list[PaymentEvent]:
        raw = verified_event(body, headers.get(SIGNATURE_HEADER, ""), self._webhook_secret)
        event = parse(EventEnvelope, raw, "event")
        if event.object != "event":
            raise WebhookPayloadError("Stripe webhook is not a snapshot event object")
        if event.livemode is not self._livemode:
            # The signature is ours, so this is a mis-pointed endpoint (test events into a live
            # gateway or the reverse): never act on it; answering 2xx stops pointless retries.
            logger.warning(
                "stripe event %s livemode=%s does not match the configured key; ignored",
                event.id,
                event.livemode,
            )
            return [Ignored(provider=self.name, reason=f"livemode mismatch ({event.type})")]
        self._note_api_version(event.id, event.api_version)
        return [await self._events.decide(event)]

    def _note_api_version(self, event_id: str, version: str | None) -> None:
        # Payloads are rendered in the endpoint's API version, not the SDK's; the fields we
        # read are stable across versions, so a mismatch is worth one warning, not a failure.
        if version != SDK_API_VERSION and version not in self._seen_versions:
            self._seen_versions.add(version)
            logger.warning(
                "stripe event %s uses API version %s but the SDK pins %s; create the webhook "
                "endpoint with api_version=%s",
                event_id,
                version,
                SDK_API_VERSION,
                SDK_API_VERSION,
            )

    # -- reconciliation -----------------------------------------------------------------

    async def fetch_status(self, provider_ref: str) -> PaymentEvent | None:
        if not is_stripe_id(provider_ref, "cs"):
            raise ProviderRejected("not a Stripe Checkout Session id")
        try:
            found = await self._client.v1.checkout.sessions.retrieve_async(provider_ref)
        except stripe.StripeError as exc:
            raise unavailable_or_rejected(exc, f"retrieve session {provider_ref}") from exc
        try:
            session = parse(Session, found.to_dict(), "session")
        except WebhookPayloadError as exc:
            raise ProviderRejected(str(exc)) from exc
        # The dedupe keys name the fact (session + outcome): a second poll of the same fact
        # is a duplicate, and the webhook for it (keyed by event id) finds the order moved.
        subject = EventSubject(
            provider=self.name,
            provider_ref=provider_ref,
            order_id=session.order_id,
            occurred_at=datetime.now(UTC),
            payment_ref=session.intent_id,
        )
        paid = session.payment_status == "paid"
        if session.status == "complete" and paid:
            try:
                return settlement(session, subject, f"reconcile:{provider_ref}:paid")
            except WebhookPayloadError as exc:
                raise ProviderRejected(str(exc)) from exc
        if session.status == "complete":
            return subject.pending(
                dedupe_key=f"reconcile:{provider_ref}:pending", detail="awaiting funds"
            )
        if session.status == "expired":
            return subject.failed(dedupe_key=f"reconcile:{provider_ref}:expired", reason="expired")
        return None

    async def aclose(self) -> None:
        await self._http.close_async()  # type: ignore[no-untyped-call]
