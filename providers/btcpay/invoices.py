"""What a Greenfield invoice means, decided on the invoice as fetched from BTCPay.

A webhook only names an invoice and says what kind of change happened: the invoice is
re-fetched and its `status` + `additionalStatus` decide, because settle payloads carry no
amount and BTCPay's webhook booleans (`overPaid`, `afterExpiration`) have regressed before
(see ../shared/notes/btcpay.md §7). Webhook types map to handlers in one table; a poll by
the reconciler decides on the status alone, with the same dedupe keys as the webhooks.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Literal

from providers.btcpay.client import GreenfieldClient
from providers.btcpay.events import failure_reason, paid_minor, price_minor, settled_notes
from providers.btcpay.shapes import Invoice, WebhookBody, is_invoice_id, nearest_minor
from providers.errors import WebhookPayloadError
from providers.events import (
    EventSubject,
    Ignored,
    PaymentEvent,
    PaymentFailed,
    PaymentSettled,
    ProviderName,
)
from providers.ids import is_order_id

# The provider's own logger: operators filter on it, whichever module decides.
log = logging.getLogger("providers.btcpay.greenfield")

_NAME = ProviderName.BTCPAY
_Handler = Callable[[WebhookBody, Invoice, EventSubject], Awaitable[list[PaymentEvent]]]


def _subject_of(invoice: Invoice) -> EventSubject:
    return EventSubject(
        provider=_NAME,
        provider_ref=invoice.id,
        order_id=invoice.order_id if is_order_id(invoice.order_id) else None,
        occurred_at=datetime.now(UTC),
    )


def _failed(subject: EventSubject, dedupe_key: str, status: str, extra: str) -> PaymentFailed:
    return subject.failed(
        dedupe_key=dedupe_key,
        reason=failure_reason(status, extra),
        by_seller=status == "Invalid" and extra == "Marked",
    )


# -- settlements and the handlers that need nothing but the invoice ---------------------


def _settlement(
    subject: EventSubject,
    invoice: Invoice,
    amount_minor: int,
    dedupe_key: str,
    notes: tuple[str, ...],
) -> PaymentSettled:
    log.info(
        "btcpay invoice %s settled for order %s: %s minor units %s",
        invoice.id,
        subject.order_id,
        amount_minor,
        notes,
    )
    # One invoice is one payment for us: reversals name the same invoice.
    return replace(subject, payment_ref=invoice.id).settled(
        dedupe_key=dedupe_key,
        amount_minor=amount_minor,
        currency=invoice.currency.upper(),
        notes=notes,
    )


def _settled(invoice: Invoice, dedupe_key: str, subject: EventSubject) -> PaymentSettled:
    extra = invoice.additionalStatus or "None"
    if extra == "Marked" or invoice.paidAmount is None:
        # Marked settled by the merchant: their word is the payment, whatever arrived.
        amount = price_minor(invoice.amount, invoice.currency)
    else:
        amount = nearest_minor(invoice.paidAmount, invoice.currency)
    return _settlement(subject, invoice, amount, dedupe_key, settled_notes(extra))


async def _on_settled(
    hook: WebhookBody, invoice: Invoice, subject: EventSubject
) -> list[PaymentEvent]:
    status, extra = invoice.status, invoice.additionalStatus or "None"
    if status != "Settled" or extra == "PaidPartial":
        log.warning(
            "btcpay InvoiceSettled for %s (order %s) but invoice is %s/%s: not settling",
            invoice.id,
            subject.order_id,
            status,
            extra,
        )
        reason = f"InvoiceSettled but the invoice is {status}/{extra}"
        return [Ignored(provider=_NAME, reason=reason, provider_ref=invoice.id)]
    return [_settled(invoice, f"{invoice.id}:InvoiceSettled", subject)]


async def _on_failed(
    hook: WebhookBody, invoice: Invoice, subject: EventSubject
) -> list[PaymentEvent]:
    """InvoiceExpired / InvoiceInvalid."""
    status, extra = invoice.status, invoice.additionalStatus or "None"
    if status not in ("Expired", "Invalid"):
        reason = f"{hook.type} but the invoice is now {status}"
        return [Ignored(provider=_NAME, reason=reason, provider_ref=invoice.id)]
    failed = _failed(subject, f"{invoice.id}:{hook.type}", status, extra)
    if not failed.by_seller:
        return [failed]
    # Marking works on a Settled invoice too: the merchant withdrew the settlement.
    # Failed moves an unpaid order; the reversal revokes a paid one.
    withdrawn = replace(subject, payment_ref=invoice.id).reversed(
        dedupe_key=f"{invoice.id}:InvoiceInvalid:reversed",
        reason="manually marked invalid in BTCPay",
        settled_only=True,
    )
    return [failed, withdrawn]


async def _on_refund(
    hook: WebhookBody, invoice: Invoice, subject: EventSubject
) -> list[PaymentEvent]:
    """The merchant gave the money back (a refund pull payment for the buyer). The
    invoice itself keeps its status, so the event decides."""
    pull = hook.pullPaymentId or ""
    refunded = replace(subject, payment_ref=invoice.id).reversed(
        dedupe_key=f"{invoice.id}:InvoiceRefund:{pull}"[:255],
        reason="refunded in BTCPay" + (f" (pull payment {pull})" if pull else ""),
    )
    return [refunded]


class InvoiceDecisions:
    """Greenfield invoices to events; asks BTCPay again where the invoice alone cannot tell
    (which payments of a late invoice have settled)."""

    def __init__(self, api: GreenfieldClient, *, late_payment: Literal["settle", "review"]) -> None:
        self._api = api
        self._late_payment = late_payment
        # Webhook type -> handler; any other type is not acted on. BTCPay >= 2.1.2 sends
        # InvoicePaidAfterExpiration for a full payment after expiry, >= 2.4.1 InvoiceRefund
        # when the merchant refunds; neither is in the spec.
        self._by_type: dict[str, _Handler] = {
            "InvoiceSettled": _on_settled,
            "InvoiceExpired": _on_failed,
            "InvoiceInvalid": _on_failed,
            "InvoiceReceivedPayment": self._on_payment,
            "InvoicePaymentSettled": self._on_payment,
            "InvoiceProcessing": self._on_payment,
            "InvoicePaidAfterExpiration": self._on_payment,
            "InvoiceRefund": _on_refund,
        }

    async def for_webhook(self, hook: WebhookBody) -> list[PaymentEvent]:
        """A verified webhook's events: its invoice fetched, and judged by the hook's type."""
        event_type, invoice_id = hook.type, hook.invoiceId
        handler = self._by_type.get(event_type)
        if handler is None:
            return [Ignored(provider=_NAME, reason=f"event type {event_type} not acted on")]
        if not invoice_id:
            raise WebhookPayloadError(f"BTCPay {event_type} webhook has no invoiceId")
        if invoice_id.startswith("__test__"):
            return [Ignored(provider=_NAME, reason="BTCPay test event")]
        if not is_invoice_id(invoice_id):
            log.warning("btcpay %s webhook with a malformed invoiceId: ignored", event_type)
            return [Ignored(provider=_NAME, reason="invoiceId is not a BTCPay invoice id")]
        invoice = await self._api.fetch_invoice(invoice_id)
        if invoice is None:
            reason = f"invoice {invoice_id} unknown to BTCPay"
            return [Ignored(provider=_NAME, reason=reason, provider_ref=invoice_id)]
        if not is_order_id(invoice.order_id):
            # Another app on the same store (its own orderId) or an invoice made by hand.
            log.info("btcpay %s for invoice %s: not one of our orders", event_type, invoice_id)
            reason = "invoice is not for one of our orders"
            return [Ignored(provider=_NAME, reason=reason, provider_ref=invoice_id)]
        return await handler(hook, invoice, _subject_of(invoice))

    async def for_status(self, provider_ref: str, invoice: Invoice) -> PaymentEvent | None:
        """The invoice's current state as one event, for the reconciler (None: nothing yet)."""
        status, extra = invoice.status, invoice.additionalStatus or "None"
        subject = _subject_of(invoice)
        # Same dedupe keys as the webhooks, so whichever arrives second is a duplicate.
        if status == "Settled" and extra != "PaidPartial":
            return _settled(invoice, f"{provider_ref}:InvoiceSettled", subject)
        if status == "Expired" and extra == "PaidLate":
            return await self._paid_late(invoice, subject)
        if status in ("Expired", "Invalid"):
            event_type = "InvoiceExpired" if status == "Expired" else "InvoiceInvalid"
            return _failed(subject, f"{provider_ref}:{event_type}", status, extra)
        if status == "Processing":
            return subject.pending(
                dedupe_key=f"{provider_ref}:InvoiceProcessing",
                detail="Processing",
                amount_paid_minor=paid_minor(invoice),
            )
        return None

    async def _on_payment(
        self, hook: WebhookBody, invoice: Invoice, subject: EventSubject
    ) -> list[PaymentEvent]:
        """Money moved on the invoice (received, confirmed, processing, paid after expiry)."""
        status, extra = invoice.status, invoice.additionalStatus or "None"
        if status == "Expired" and extra == "PaidLate":
            return [await self._paid_late(invoice, subject)]
        if status in ("Expired", "Invalid"):
            # A payment to a dead invoice that BTCPay has not marked PaidLate (yet): an
            # instant payment is Settled before the invoice is updated, or it is only part
            # of the price. Genuine, but nothing to apply now: re-check soon, keep no slot.
            return [
                Ignored(
                    provider=_NAME,
                    reason=f"{hook.type} on a {status}/{extra} invoice: re-check later",
                    provider_ref=invoice.id,
                    recheck_soon=True,
                )
            ]
        detail = f"{hook.type}: invoice {status}"
        if extra != "None":
            detail += f" ({extra})"
        # One slot per payment: a second partial payment must update the amount paid.
        suffix = f":{hook.payment.id}" if hook.payment is not None else ""
        pending = subject.pending(
            dedupe_key=f"{invoice.id}:{hook.type}{suffix}",
            detail=detail,
            amount_paid_minor=paid_minor(invoice),
        )
        return [pending]

    async def _paid_late(self, invoice: Invoice, subject: EventSubject) -> PaymentEvent:
        """Expired + PaidLate: BTCPay's PaidLate counts unconfirmed payments, so under
        `settle` only the *settled* payments may settle the order."""
        if self._late_payment == "review":
            return subject.needs_review(
                dedupe_key=f"{invoice.id}:PaidLate",
                reason=(
                    "paid in full after the invoice expired (late_payment=review): issue or "
                    "dismiss it; BTCPay will not settle it by itself"
                ),
                amount_minor=paid_minor(invoice),
                currency=invoice.currency.upper(),
            )
        settled = await self._api.settled_minor(invoice)
        price = price_minor(invoice.amount, invoice.currency)
        if settled < price:
            log.info(
                "btcpay invoice %s paid late, %s of %s %s settled so far: waiting",
                invoice.id,
                settled,
                price,
                invoice.currency,
            )
            return Ignored(
                provider=_NAME,
                reason=f"paid late; {settled} of {price} minor units settled so far",
                provider_ref=invoice.id,
                recheck_soon=True,
            )
        notes = ("paid after expiration",)
        return _settlement(subject, invoice, settled, f"{invoice.id}:PaidLate", notes)
