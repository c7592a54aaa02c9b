"""Stripe Checkout ("Pay with Card") through the official SDK's `StripeClient`.

The client is built per provider from settings (never the global `stripe.api_key`) and talks
over the SDK's httpx client with the `*_async` methods. SDK errors are translated here, at
the boundary; nothing above this module sees a `stripe` exception or a `StripeObject`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
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
from providers.errors import (
    ProviderRejected,
    ProviderUnavailable,
    WebhookPayloadError,
    WebhookSignatureError,
)
from providers.events import (
    Ignored,
    PaymentEvent,
    PaymentFailed,
    PaymentPending,
    PaymentReinstated,
    PaymentReversed,
    PaymentSettled,
    ProviderName,
)
from providers.stripe.client import GatewayHTTPXClient, expiry, unavailable_or_rejected
from providers.stripe.money import from_stripe, to_stripe
from providers.stripe.payloads import (
    Charge,
    Dispute,
    EventEnvelope,
    Intent,
    Refund,
    Session,
    is_stripe_id,
    parse,
)

logger = logging.getLogger(__name__)

SIGNATURE_TOLERANCE_SECONDS = 300
SDK_API_VERSION: str = stripe._api_version._ApiVersion.CURRENT
_SESSION_EVENTS = frozenset(
    {
        "checkout.session.completed",
        "checkout.session.async_payment_succeeded",
        "checkout.session.async_payment_failed",
        "checkout.session.expired",
    }
)


def _at(timestamp: int) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC)


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
            provider_ref=session.id, checkout_url=session.url, expires_at=_at(session.expires_at)
        )

    # -- webhooks -----------------------------------------------------------------------

    async def parse_webhook(self, body: bytes, headers: Mapping[str, str]) -> list[PaymentEvent]:
        raw = self._verified_event(body, headers.get("stripe-signature", ""))
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
        handler = self._handlers().get(event.type)
        if handler is None:
            return [Ignored(provider=self.name, reason=f"unhandled event type {event.type}")]
        return [await handler(event.id, event.type, event.data.object, _at(event.created))]

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

    def _verified_event(self, body: bytes, signature: str) -> Any:
        """Check `Stripe-Signature` on the exact bytes with the SDK; only then parse JSON."""
        if not signature.strip():
            raise WebhookSignatureError("missing Stripe-Signature header")
        # Checked first and strictly: the SDK takes `t=<ts>=x` and would leave us an int()
        # of garbage; a far-future stamp would defeat the replay window.
        stamps = [p.partition("=")[2] for p in signature.split(",") if p.startswith("t=")]
        if len(stamps) != 1 or not stamps[0].isascii() or not stamps[0].isdigit():
            raise WebhookSignatureError("malformed Stripe-Signature timestamp")
        if int(stamps[0]) > time.time() + SIGNATURE_TOLERANCE_SECONDS:
            raise WebhookSignatureError("Stripe-Signature timestamp is in the future")
        try:
            text = body.decode("utf-8")
            stripe.WebhookSignature.verify_header(
                text, signature, self._webhook_secret, tolerance=SIGNATURE_TOLERANCE_SECONDS
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

    def _handlers(
        self,
    ) -> dict[str, Callable[[str, str, dict[str, Any], datetime], Awaitable[PaymentEvent]]]:
        return {
            **dict.fromkeys(_SESSION_EVENTS, self._on_session),
            "charge.refunded": self._on_refund,
            "charge.dispute.created": self._on_dispute,
            "charge.dispute.closed": self._on_dispute_closed,
            "charge.refund.updated": self._on_refund_update,
            "refund.failed": self._on_refund_update,
        }

    async def _on_session(
        self, event_id: str, event_type: str, data: dict[str, Any], created: datetime
    ) -> PaymentEvent:
        session = parse(Session, data, event_type)
        order_id = session.order_id
        if session.mode != "payment" or order_id is None:
            return Ignored(
                provider=self.name,
                reason=f"{event_type} for a session this gateway did not create",
                provider_ref=session.id,
            )
        common: dict[str, Any] = {
            "provider": self.name,
            "provider_ref": session.id,
            "order_id": order_id,
            # Stripe redelivers an event with the same id; distinct facts have distinct ids.
            "dedupe_key": event_id,
            "occurred_at": created,
            "payment_ref": session.intent_id,
        }
        paid = session.payment_status == "paid"
        if event_type == "checkout.session.async_payment_succeeded" or (
            event_type == "checkout.session.completed" and paid
        ):
            return self._settled(session, common)
        if event_type == "checkout.session.completed":
            return PaymentPending(**common, detail="delayed payment method, awaiting funds")
        if event_type == "checkout.session.async_payment_failed":
            return PaymentFailed(**common, reason="delayed payment failed")
        return PaymentFailed(**common, reason="checkout session expired")

    def _settled(self, session: Session, common: dict[str, Any]) -> PaymentSettled:
        if session.amount_total is None or session.currency is None:
            raise WebhookPayloadError(f"Stripe session {session.id} is paid but has no amount")
        try:
            currency = normalize_currency(session.currency)
            amount = from_stripe(session.amount_total, currency)
        except MoneyError as exc:
            raise WebhookPayloadError(f"Stripe session {session.id}: {exc}") from exc
        return PaymentSettled(**common, amount_minor=amount, currency=currency)

    async def _on_refund(
        self, event_id: str, event_type: str, data: dict[str, Any], created: datetime
    ) -> PaymentEvent:
        charge = parse(Charge, data, event_type)
        if not (charge.refunded or charge.amount_refunded >= charge.amount):
            return Ignored(
                provider=self.name,
                reason=f"partial refund ({charge.amount_refunded} of {charge.amount}); "
                "license kept",
                provider_ref=charge.intent_id,
            )
        return await self._reversal(event_id, charge.intent_id, None, created, reason="refunded")

    async def _on_dispute(
        self, event_id: str, event_type: str, data: dict[str, Any], created: datetime
    ) -> PaymentEvent:
        dispute = parse(Dispute, data, event_type)
        reason = f"disputed ({dispute.reason or 'unknown reason'})"
        return await self._reversal(
            event_id, dispute.intent_id, dispute.charge_id, created, reason=reason
        )

    async def _on_dispute_closed(
        self, event_id: str, event_type: str, data: dict[str, Any], created: datetime
    ) -> PaymentEvent:
        dispute = parse(Dispute, data, event_type)
        if dispute.status != "won":
            # Lost: the money went back at charge.dispute.created, which already revoked.
            return Ignored(provider=self.name, reason=f"dispute closed as {dispute.status}")
        return await self._reinstatement(
            event_id, dispute.intent_id, dispute.charge_id, created, reason="dispute won"
        )

    async def _on_refund_update(
        self, event_id: str, event_type: str, data: dict[str, Any], created: datetime
    ) -> PaymentEvent:
        refund = parse(Refund, data, event_type)
        if refund.status != "failed":
            return Ignored(provider=self.name, reason=f"refund is {refund.status}")
        return await self._reinstatement(
            event_id, refund.intent_id, refund.charge_id, created, reason="refund failed"
        )

    async def _intent_of(self, intent_id: str | None, charge_id: str | None) -> str | None:
        if intent_id is None and charge_id is not None:
            found = await self._retrieve(self._client.v1.charges.retrieve_async, charge_id)
            intent_id = parse(Charge, found, "charge").intent_id if found else None
        return intent_id

    async def _reversal(
        self,
        event_id: str,
        intent_id: str | None,
        charge_id: str | None,
        created: datetime,
        *,
        reason: str,
    ) -> PaymentEvent:
        intent_id = await self._intent_of(intent_id, charge_id)
        if intent_id is None:
            return Ignored(provider=self.name, reason=f"{reason} for a charge without a payment")
        return PaymentReversed(
            **await self._money_event(event_id, intent_id, created), reason=reason
        )

    async def _reinstatement(
        self,
        event_id: str,
        intent_id: str | None,
        charge_id: str | None,
        created: datetime,
        *,
        reason: str,
    ) -> PaymentEvent:
        # Re-read the charge: a won dispute on a charge that was also refunded in full, or a
        # failed refund next to one that succeeded, leaves the money gone all the same.
        if charge_id is None:
            return Ignored(provider=self.name, reason=f"{reason} without a charge")
        found = await self._retrieve(self._client.v1.charges.retrieve_async, charge_id)
        if found is None:
            return Ignored(provider=self.name, reason=f"{reason}: charge {charge_id} not found")
        charge = parse(Charge, found, "charge")
        if charge.refunded or charge.amount_refunded >= charge.amount:
            return Ignored(provider=self.name, reason=f"{reason}, but the charge is refunded")
        intent_id = intent_id or charge.intent_id
        if intent_id is None:
            return Ignored(provider=self.name, reason=f"{reason} for a charge without a payment")
        return PaymentReinstated(
            **await self._money_event(event_id, intent_id, created), reason=reason
        )

    async def _money_event(
        self, event_id: str, intent_id: str, created: datetime
    ) -> dict[str, Any]:
        intent = await self._retrieve(self._client.v1.payment_intents.retrieve_async, intent_id)
        order_id = parse(Intent, intent, "payment intent").order_id if intent else None
        return {
            "provider": self.name,
            "provider_ref": intent_id,
            "order_id": order_id,
            "dedupe_key": event_id,
            "occurred_at": created,
            # The gateway applies it only if this is the payment that settled the order.
            "payment_ref": intent_id,
        }

    async def _retrieve(
        self, retrieve: Callable[[str], Awaitable[stripe.StripeObject]], object_id: str
    ) -> dict[str, Any] | None:
        """A plain dict of the object; None when Stripe says it does not exist for our key.

        A network error or 5xx raises ProviderUnavailable so the webhook answers 503 and
        Stripe redelivers instead of the reversal being lost.
        """
        if not is_stripe_id(object_id):
            raise WebhookPayloadError("Stripe id has an unexpected shape")
        try:
            found = await retrieve(object_id)
        except stripe.StripeError as exc:
            error = unavailable_or_rejected(exc, f"retrieve {object_id}")
            if isinstance(error, ProviderUnavailable):
                raise error from exc
            logger.warning("stripe %s not retrievable: %s", object_id, exc.user_message)
            return None
        data: dict[str, Any] = found.to_dict()
        return data

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
        common: dict[str, Any] = {
            "provider": self.name,
            "provider_ref": provider_ref,
            "order_id": session.order_id,
            "occurred_at": datetime.now(UTC),
            "payment_ref": session.intent_id,
        }
        paid = session.payment_status == "paid"
        if session.status == "complete" and paid:
            try:
                return self._settled(
                    session, {**common, "dedupe_key": f"reconcile:{provider_ref}:paid"}
                )
            except WebhookPayloadError as exc:
                raise ProviderRejected(str(exc)) from exc
        if session.status == "complete":
            return PaymentPending(
                **common, dedupe_key=f"reconcile:{provider_ref}:pending", detail="awaiting funds"
            )
        if session.status == "expired":
            return PaymentFailed(
                **common, dedupe_key=f"reconcile:{provider_ref}:expired", reason="expired"
            )
        return None

    async def aclose(self) -> None:
        await self._http.close_async()  # type: ignore[no-untyped-call]
