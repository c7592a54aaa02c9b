"""What a legacy (BitPay-compatible) invoice means, decided on the invoice as fetched with
the signed client: an IPN body is unsigned, so it never decides anything itself.

One handler per legacy `status`; `exceptionStatus` refines it (paidPartial, paidOver,
paidLater, marked).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from providers.btcpay.events import settled_event
from providers.events import (
    EventSubject,
    Ignored,
    PaymentEvent,
    PaymentFailed,
    PaymentReversed,
    ProviderName,
)
from providers.ids import is_order_id

_NAME = ProviderName.BTCPAY
# (what the event is about, the fetched invoice, its exceptionStatus) -> the event, or None
# while there is nothing to act on.
_Handler = Callable[[EventSubject, dict[str, Any], Any], PaymentEvent | None]
_SETTLED_NOTES = {"paidOver": ("overpaid",), "marked": ("manually marked settled",)}


def _new(subject: EventSubject, invoice: dict[str, Any], exception: Any) -> PaymentEvent | None:
    return None


def _paid(subject: EventSubject, invoice: dict[str, Any], exception: Any) -> PaymentEvent | None:
    return subject.pending(dedupe_key=f"{subject.provider_ref}:paid", detail="paid")


def _complete(
    subject: EventSubject, invoice: dict[str, Any], exception: Any
) -> PaymentEvent | None:
    if exception == "paidPartial":
        return Ignored(
            provider=_NAME, reason="complete but partially paid", provider_ref=subject.provider_ref
        )
    return settled_event(
        invoice.get("price"),
        invoice.get("currency"),
        dedupe_key=f"{subject.provider_ref}:complete",
        notes=_SETTLED_NOTES.get(str(exception), ()),
        # One invoice is one payment for us: reversals name the same invoice.
        subject=replace(subject, payment_ref=subject.provider_ref),
    )


def _expired(subject: EventSubject, invoice: dict[str, Any], exception: Any) -> PaymentEvent | None:
    if exception == "paidLater":
        # Whatever late_payment says: the legacy API shows no per-payment confirmation,
        # and "paidLater" is set on unconfirmed money (InvoiceWatcher counts accounted
        # payments), so a human decides. BTCPay sends no IPN for it either; the
        # reconciler's fetch_status finds it.
        return subject.needs_review(
            dedupe_key=f"{subject.provider_ref}:paidLater",
            reason=(
                "paid after the invoice expired (legacy mode cannot see whether the "
                "payment confirmed): check it in BTCPay, then issue or dismiss"
            ),
            amount_minor=None,
            currency=str(invoice.get("currency") or "").upper() or None,
        )
    reason = "expired, partially paid" if exception == "paidPartial" else "expired"
    return subject.failed(dedupe_key=f"{subject.provider_ref}:expired", reason=reason)


def _invalid(subject: EventSubject, invoice: dict[str, Any], exception: Any) -> PaymentEvent | None:
    reason = "manually marked invalid" if exception == "marked" else "invalid"
    return subject.failed(
        dedupe_key=f"{subject.provider_ref}:invalid",
        reason=reason,
        by_seller=exception == "marked",
    )


_BY_STATUS: dict[str, _Handler] = {
    "new": _new,
    "paid": _paid,
    # "confirmed" only appears in IPN bodies; GET says "complete". One handler for both.
    "confirmed": _complete,
    "complete": _complete,
    "expired": _expired,
    "invalid": _invalid,
}


def decide(invoice_id: str, invoice: dict[str, Any]) -> PaymentEvent | None:
    """The event a fetched legacy invoice stands for; None while it is unpaid."""
    status = invoice.get("status")
    if not is_order_id(invoice.get("orderId")):
        return Ignored(
            provider=_NAME, reason="invoice is not for one of our orders", provider_ref=invoice_id
        )
    # Anything BTCPay might put there (a list, a number) is an unknown status, not a crash.
    handler = _BY_STATUS.get(status) if isinstance(status, str) else None
    if handler is None:
        return Ignored(
            provider=_NAME, reason=f"unknown legacy status {status!r}", provider_ref=invoice_id
        )
    subject = EventSubject(
        provider=_NAME,
        provider_ref=invoice_id,
        order_id=invoice.get("orderId"),
        occurred_at=datetime.now(UTC),
    )
    return handler(subject, invoice, invoice.get("exceptionStatus") or None)


def ipn_events(invoice_id: str, invoice: dict[str, Any]) -> list[PaymentEvent]:
    """What an IPN about `invoice_id` means, once the invoice is fetched."""
    event = decide(invoice_id, invoice)
    if event is None:
        return [Ignored(provider=_NAME, reason="invoice not paid yet", provider_ref=invoice_id)]
    if isinstance(event, PaymentFailed) and event.reason == "manually marked invalid":
        # Marking works on a complete invoice too (BitpayIPNSender sends MarkedInvalid):
        # the merchant withdrew the settlement, so a paid order's license is revoked.
        withdrawn = PaymentReversed(
            provider=_NAME,
            provider_ref=invoice_id,
            order_id=event.order_id,
            occurred_at=event.occurred_at,
            payment_ref=invoice_id,
            dedupe_key=f"{invoice_id}:invalid:reversed",
            reason="manually marked invalid in BTCPay",
            settled_only=True,
        )
        return [event, withdrawn]
    return [event]
