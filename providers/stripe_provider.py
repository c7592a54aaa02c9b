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

from config.money import MoneyError, exponent, normalize_currency
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
    PaymentReversed,
    PaymentSettled,
    ProviderName,
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
# Statuses that mean "try again later": Stripe's own retry rules (5xx, 409 lock timeouts, 429).
_RETRIABLE_STATUS = frozenset({409, 429})


class _GatewayHTTPXClient(stripe.HTTPXClient):
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


def _unavailable_or_rejected(
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


def _expandable_id(value: Any) -> str | None:
    """An expandable field is an id string, or the expanded object carrying `id`."""
    if isinstance(value, dict):
        value = value.get("id")
    return value if isinstance(value, str) and value else None


def _at(timestamp: Any) -> datetime:
    return datetime.fromtimestamp(int(timestamp), UTC)


def _expires_at(req: CheckoutRequest, minutes: int) -> int:
    # Anchored on the order's creation, not on now: Stripe answers a reused idempotency key
    # with different parameters by a 400, so a retry must send identical bytes. Stripe checks
    # 30 min <= lifetime <= 24 h on its own clock; a minute is kept clear of both ends for
    # clock skew.
    lifetime = min(max(minutes * 60, 31 * 60), 24 * 3600 - 60)
    if req.created_at is None:
        logger.warning(
            "order %s: no created_at, session expiry anchored on now (a retried create after "
            "the clock moves gets Stripe's idempotency error)",
            req.order_id,
        )
        return int(time.time()) + lifetime
    return int(req.created_at.timestamp()) + lifetime


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
        self._http = _GatewayHTTPXClient(settings.timeout_seconds, transport)
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
            places = exponent(currency)
        except MoneyError as exc:
            raise ProviderRejected(f"Stripe cannot charge {req.currency!r}: {exc}") from exc
        if req.amount_minor <= 0:
            raise ProviderRejected(f"amount must be positive, got {req.amount_minor}")
        if places == 3 and req.amount_minor % 10:
            # Stripe refuses 3-decimal amounts whose last digit is not 0; say so before sending.
            raise ProviderRejected(
                f"Stripe requires {currency} amounts to end in 0 (got {req.amount_minor} minor "
                "units); round the catalog price to 2 decimals"
            )
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
                        "unit_amount": req.amount_minor,
                        "product_data": product,
                    },
                    "quantity": 1,
                }
            ],
            "customer_email": req.buyer_email,
            "client_reference_id": req.order_id,
            "metadata": metadata,
            "payment_intent_data": {"metadata": metadata},
            # Unchanged: our status page is keyed by order and never fulfils on the redirect,
            # so `?session_id={CHECKOUT_SESSION_ID}` would carry nothing we would trust.
            "success_url": req.success_url,
            "cancel_url": req.cancel_url,
        }
        if self._settings.session_expires_minutes is not None:
            params["expires_at"] = _expires_at(req, self._settings.session_expires_minutes)
        try:
            session = await self._client.v1.checkout.sessions.create_async(
                params, options={"idempotency_key": req.idempotency_key}
            )
        except stripe.StripeError as exc:
            raise _unavailable_or_rejected(exc, "create checkout session") from exc
        if not session.url:
            raise ProviderRejected(f"Stripe returned session {session.id} without a URL")
        logger.info("stripe checkout session %s created for order %s", session.id, req.order_id)
        return CheckoutSession(
            provider_ref=session.id, checkout_url=session.url, expires_at=_at(session.expires_at)
        )

    # -- webhooks -----------------------------------------------------------------------

    async def parse_webhook(self, body: bytes, headers: Mapping[str, str]) -> list[PaymentEvent]:
        event = self._verified_event(body, headers.get("stripe-signature", ""))
        try:
            event_id, event_type = str(event["id"]), str(event["type"])
            livemode, data = event["livemode"], event["data"]["object"]
            created = _at(event["created"])
            if not isinstance(data, dict) or not event_id.startswith("evt_"):
                raise TypeError("event.data.object must be an object and id an evt_ id")
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            raise WebhookPayloadError(f"Stripe event lacks required fields: {exc!r}") from exc
        if livemode is not self._livemode:
            # The signature is ours, so this is a mis-pointed endpoint (test events into a live
            # gateway or the reverse): never act on it; answering 2xx stops pointless retries.
            logger.warning(
                "stripe event %s livemode=%s does not match the configured key; ignored",
                event_id,
                livemode,
            )
            return [Ignored(provider=self.name, reason=f"livemode mismatch ({event_type})")]
        self._note_api_version(event_id, event.get("api_version"))
        handler = self._handlers().get(event_type)
        if handler is None:
            return [Ignored(provider=self.name, reason=f"unhandled event type {event_type}")]
        try:
            return [await handler(event_id, event_type, data, created)]
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            raise WebhookPayloadError(
                f"Stripe {event_type} {event_id}: bad payload {exc!r}"
            ) from exc

    def _note_api_version(self, event_id: str, version: Any) -> None:
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

    def _verified_event(self, body: bytes, signature: str) -> dict[str, Any]:
        """Check `Stripe-Signature` on the exact bytes with the SDK; only then parse JSON."""
        if not signature.strip():
            raise WebhookSignatureError("missing Stripe-Signature header")
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
        except TypeError as exc:
            # hmac.compare_digest refuses non-ASCII signature strings: a forged header.
            raise WebhookSignatureError("malformed Stripe-Signature header") from exc
        self._check_future_skew(signature)
        # A plain dict, not `stripe.Event`: we only read fields, and a StripeObject is not a
        # dict since stripe v15 (`.get()` raises), a trap for the mapping code below.
        try:
            event = json.loads(text)
        except ValueError as exc:
            raise WebhookPayloadError(f"Stripe webhook is not JSON: {exc}") from exc
        if not isinstance(event, dict) or event.get("object") != "event":
            raise WebhookPayloadError("Stripe webhook is not a snapshot event object")
        return event

    @staticmethod
    def _check_future_skew(signature: str) -> None:
        # The SDK only rejects old timestamps; a far-future one would defeat the replay window.
        stamps = [p.partition("=")[2] for p in signature.split(",") if p.startswith("t=")]
        if stamps and int(stamps[0]) > time.time() + SIGNATURE_TOLERANCE_SECONDS:
            raise WebhookSignatureError("Stripe-Signature timestamp is in the future")

    def _handlers(
        self,
    ) -> dict[str, Callable[[str, str, dict[str, Any], datetime], Awaitable[PaymentEvent]]]:
        return {
            **dict.fromkeys(_SESSION_EVENTS, self._on_session),
            "charge.refunded": self._on_refund,
            "charge.dispute.created": self._on_dispute,
        }

    async def _on_session(
        self, event_id: str, event_type: str, session: dict[str, Any], created: datetime
    ) -> PaymentEvent:
        session_id = str(session["id"])
        metadata = session.get("metadata") or {}
        order_id = session.get("client_reference_id") or metadata.get("order_id")
        if session.get("mode") != "payment" or not order_id:
            return Ignored(
                provider=self.name,
                reason=f"{event_type} for a session this gateway did not create",
                provider_ref=session_id,
            )
        common: dict[str, Any] = {
            "provider": self.name,
            "provider_ref": session_id,
            "order_id": str(order_id),
            # Stripe redelivers an event with the same id; distinct facts have distinct ids.
            "dedupe_key": event_id,
            "occurred_at": created,
            "payment_ref": _expandable_id(session.get("payment_intent")),
        }
        paid = session.get("payment_status") == "paid"
        if event_type == "checkout.session.async_payment_succeeded" or (
            event_type == "checkout.session.completed" and paid
        ):
            return PaymentSettled(
                **common,
                amount_minor=int(session["amount_total"]),
                currency=str(session["currency"]).upper(),
            )
        if event_type == "checkout.session.completed":
            return PaymentPending(**common, detail="delayed payment method, awaiting funds")
        if event_type == "checkout.session.async_payment_failed":
            return PaymentFailed(**common, reason="delayed payment failed")
        return PaymentFailed(**common, reason="checkout session expired")

    async def _on_refund(
        self, event_id: str, event_type: str, charge: dict[str, Any], created: datetime
    ) -> PaymentEvent:
        amount, refunded = int(charge["amount"]), int(charge["amount_refunded"])
        if not (charge.get("refunded") is True or refunded >= amount):
            return Ignored(
                provider=self.name,
                reason=f"partial refund ({refunded} of {amount}); license kept",
                provider_ref=_expandable_id(charge.get("payment_intent")),
            )
        return await self._reversal(event_id, charge, created, reason="refunded")

    async def _on_dispute(
        self, event_id: str, event_type: str, dispute: dict[str, Any], created: datetime
    ) -> PaymentEvent:
        reason = f"disputed ({dispute.get('reason') or 'unknown reason'})"
        return await self._reversal(event_id, dispute, created, reason=reason)

    async def _reversal(
        self, event_id: str, obj: dict[str, Any], created: datetime, *, reason: str
    ) -> PaymentEvent:
        intent_id = _expandable_id(obj.get("payment_intent"))
        if intent_id is None and (charge_id := _expandable_id(obj.get("charge"))):
            charge = await self._retrieve(self._client.v1.charges.retrieve_async, charge_id)
            intent_id = _expandable_id(charge.get("payment_intent")) if charge else None
        if intent_id is None:
            return Ignored(provider=self.name, reason=f"{reason} for a charge without a payment")
        intent = await self._retrieve(self._client.v1.payment_intents.retrieve_async, intent_id)
        order_id = ((intent or {}).get("metadata") or {}).get("order_id")
        return PaymentReversed(
            provider=self.name,
            provider_ref=intent_id,
            order_id=str(order_id) if order_id else None,
            dedupe_key=event_id,
            occurred_at=created,
            payment_ref=intent_id,
            reason=reason,
        )

    async def _retrieve(
        self, retrieve: Callable[[str], Awaitable[stripe.StripeObject]], object_id: str
    ) -> dict[str, Any] | None:
        """A plain dict of the object; None when Stripe says it does not exist for our key.

        A network error or 5xx raises ProviderUnavailable so the webhook answers 503 and
        Stripe redelivers instead of the reversal being lost.
        """
        try:
            found = await retrieve(object_id)
        except stripe.StripeError as exc:
            error = _unavailable_or_rejected(exc, f"retrieve {object_id}")
            if isinstance(error, ProviderUnavailable):
                raise error from exc
            logger.warning("stripe %s not retrievable: %s", object_id, exc.user_message)
            return None
        data: dict[str, Any] = found.to_dict()
        return data

    # -- reconciliation -----------------------------------------------------------------

    async def fetch_status(self, provider_ref: str) -> PaymentEvent | None:
        try:
            session = await self._client.v1.checkout.sessions.retrieve_async(provider_ref)
        except stripe.StripeError as exc:
            raise _unavailable_or_rejected(exc, f"retrieve session {provider_ref}") from exc
        data: dict[str, Any] = session.to_dict()
        status, paid = data.get("status"), data.get("payment_status") == "paid"
        order_id = data.get("client_reference_id") or (data.get("metadata") or {}).get("order_id")
        common: dict[str, Any] = {
            "provider": self.name,
            "provider_ref": provider_ref,
            "order_id": order_id,
            "occurred_at": datetime.now(UTC),
            "payment_ref": _expandable_id(data.get("payment_intent")),
        }
        if status == "complete" and paid:
            return PaymentSettled(
                **common,
                dedupe_key=f"reconcile:{provider_ref}:paid",
                amount_minor=int(data["amount_total"]),
                currency=str(data["currency"]).upper(),
            )
        if status == "complete":
            return PaymentPending(
                **common, dedupe_key=f"reconcile:{provider_ref}:pending", detail="awaiting funds"
            )
        if status == "expired":
            return PaymentFailed(
                **common, dedupe_key=f"reconcile:{provider_ref}:expired", reason="expired"
            )
        return None

    async def aclose(self) -> None:
        await self._http.close_async()  # type: ignore[no-untyped-call]
