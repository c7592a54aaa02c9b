"""What a verified Stripe event means: one handler per event type.

Settled = `checkout.session.completed` with `payment_status == "paid"`, or
`…async_payment_succeeded`; failed = `…async_payment_failed`, `checkout.session.expired`;
reversed = `charge.refunded` (in full), `charge.dispute.created`; reinstated = a dispute won
or a refund failed. Reversals name the payment intent, so its order is read from the
intent's metadata (only we set it), and a reinstatement re-reads the charge first.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import stripe

from config.money import MoneyError, normalize_currency
from providers.errors import ProviderUnavailable, WebhookPayloadError
from providers.events import EventSubject, Ignored, PaymentEvent, PaymentSettled, ProviderName
from providers.stripe.client import unavailable_or_rejected
from providers.stripe.money import from_stripe
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

# The provider's own logger: operators filter on it, whichever module decides.
logger = logging.getLogger("providers.stripe.provider")

_NAME = ProviderName.STRIPE
# (event id, event type, the event's data.object, when Stripe created the event) -> event
_Handler = Callable[[str, str, dict[str, Any], datetime], Awaitable[PaymentEvent]]


def at(timestamp: int) -> datetime:
    """A Stripe unix timestamp as an aware UTC datetime."""
    return datetime.fromtimestamp(timestamp, UTC)


def settlement(session: Session, subject: EventSubject, dedupe_key: str) -> PaymentSettled:
    """A paid session's settlement, in our minor units (Stripe's differ for some currencies)."""
    if session.amount_total is None or session.currency is None:
        raise WebhookPayloadError(f"Stripe session {session.id} is paid but has no amount")
    try:
        currency = normalize_currency(session.currency)
        amount = from_stripe(session.amount_total, currency)
    except MoneyError as exc:
        raise WebhookPayloadError(f"Stripe session {session.id}: {exc}") from exc
    return subject.settled(dedupe_key=dedupe_key, amount_minor=amount, currency=currency)


async def _on_session(
    event_id: str, event_type: str, data: dict[str, Any], created: datetime
) -> PaymentEvent:
    session = parse(Session, data, event_type)
    order_id = session.order_id
    if session.mode != "payment" or order_id is None:
        return Ignored(
            provider=_NAME,
            reason=f"{event_type} for a session this gateway did not create",
            provider_ref=session.id,
        )
    subject = EventSubject(
        provider=_NAME,
        provider_ref=session.id,
        order_id=order_id,
        occurred_at=created,
        payment_ref=session.intent_id,
    )
    # Keyed by event id: Stripe redelivers an event with the same id; distinct facts have
    # distinct ids.
    paid = session.payment_status == "paid"
    if event_type == "checkout.session.async_payment_succeeded" or (
        event_type == "checkout.session.completed" and paid
    ):
        return settlement(session, subject, event_id)
    if event_type == "checkout.session.completed":
        return subject.pending(dedupe_key=event_id, detail="delayed payment method, awaiting funds")
    if event_type == "checkout.session.async_payment_failed":
        return subject.failed(dedupe_key=event_id, reason="delayed payment failed")
    return subject.failed(dedupe_key=event_id, reason="checkout session expired")


class StripeEvents:
    """Decides verified events; reads charges and payment intents where an event names
    only those."""

    def __init__(self, client: stripe.StripeClient) -> None:
        self._client = client
        self._by_type: dict[str, _Handler] = {
            "checkout.session.completed": _on_session,
            "checkout.session.async_payment_succeeded": _on_session,
            "checkout.session.async_payment_failed": _on_session,
            "checkout.session.expired": _on_session,
            "charge.refunded": self._on_refund,
            "charge.dispute.created": self._on_dispute,
            "charge.dispute.closed": self._on_dispute_closed,
            "charge.refund.updated": self._on_refund_update,
            "refund.failed": self._on_refund_update,
        }

    async def decide(self, event: EventEnvelope) -> PaymentEvent:
        handler = self._by_type.get(event.type)
        if handler is None:
            return Ignored(provider=_NAME, reason=f"unhandled event type {event.type}")
        return await handler(event.id, event.type, event.data.object, at(event.created))

    async def _on_refund(
        self, event_id: str, event_type: str, data: dict[str, Any], created: datetime
    ) -> PaymentEvent:
        charge = parse(Charge, data, event_type)
        if not (charge.refunded or charge.amount_refunded >= charge.amount):
            return Ignored(
                provider=_NAME,
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
            return Ignored(provider=_NAME, reason=f"dispute closed as {dispute.status}")
        return await self._reinstatement(
            event_id, dispute.intent_id, dispute.charge_id, created, reason="dispute won"
        )

    async def _on_refund_update(
        self, event_id: str, event_type: str, data: dict[str, Any], created: datetime
    ) -> PaymentEvent:
        refund = parse(Refund, data, event_type)
        if refund.status != "failed":
            return Ignored(provider=_NAME, reason=f"refund is {refund.status}")
        return await self._reinstatement(
            event_id, refund.intent_id, refund.charge_id, created, reason="refund failed"
        )

    async def _reversal(
        self,
        event_id: str,
        intent_id: str | None,
        charge_id: str | None,
        created: datetime,
        *,
        reason: str,
    ) -> PaymentEvent:
        if intent_id is None and charge_id is not None:
            found = await self._retrieve(self._client.v1.charges.retrieve_async, charge_id)
            intent_id = parse(Charge, found, "charge").intent_id if found else None
        if intent_id is None:
            return Ignored(provider=_NAME, reason=f"{reason} for a charge without a payment")
        subject = await self._payment_subject(intent_id, created)
        return subject.reversed(dedupe_key=event_id, reason=reason)

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
            return Ignored(provider=_NAME, reason=f"{reason} without a charge")
        found = await self._retrieve(self._client.v1.charges.retrieve_async, charge_id)
        if found is None:
            return Ignored(provider=_NAME, reason=f"{reason}: charge {charge_id} not found")
        charge = parse(Charge, found, "charge")
        if charge.refunded or charge.amount_refunded >= charge.amount:
            return Ignored(provider=_NAME, reason=f"{reason}, but the charge is refunded")
        intent_id = intent_id or charge.intent_id
        if intent_id is None:
            return Ignored(provider=_NAME, reason=f"{reason} for a charge without a payment")
        subject = await self._payment_subject(intent_id, created)
        return subject.reinstated(dedupe_key=event_id, reason=reason)

    async def _payment_subject(self, intent_id: str, created: datetime) -> EventSubject:
        intent = await self._retrieve(self._client.v1.payment_intents.retrieve_async, intent_id)
        order_id = parse(Intent, intent, "payment intent").order_id if intent else None
        return EventSubject(
            provider=_NAME,
            provider_ref=intent_id,
            order_id=order_id,
            occurred_at=created,
            # The gateway applies it only if this is the payment that settled the order.
            payment_ref=intent_id,
        )

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
