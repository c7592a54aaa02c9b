"""Event-building helpers shared by both BTCPay modes: amounts from a fetched invoice, the
notes a settlement carries and the reason a failure gives."""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any

from config.money import MoneyError, to_minor
from providers.btcpay.shapes import Invoice, nearest_minor
from providers.errors import ProviderUnavailable
from providers.events import EventSubject, PaymentSettled

log = logging.getLogger("providers.btcpay.greenfield")


def price_minor(amount: Decimal | None, currency: str) -> int:
    try:
        if amount is None:
            raise MoneyError("no amount")
        return to_minor(amount, currency.upper())
    except MoneyError as exc:
        raise ProviderUnavailable(f"BTCPay invoice has no usable amount: {exc}") from exc


def paid_minor(invoice: Invoice) -> int | None:
    if invoice.paidAmount is None:
        return None
    try:
        return nearest_minor(invoice.paidAmount, invoice.currency.upper())
    except ProviderUnavailable:
        return None  # only informative on a pending event


def settled_event(
    amount: Any,
    currency: Any,
    *,
    dedupe_key: str,
    notes: tuple[str, ...],
    subject: EventSubject,
) -> PaymentSettled:
    """`PaymentSettled` from the amount and currency of an invoice *fetched* from BTCPay.

    Shared by both modes. Greenfield sends the amount as a decimal string; the legacy API
    as a JSON number, whose shortest repr (`str(float)`) is the decimal text BTCPay sent,
    so no float arithmetic touches it.
    """
    try:
        if isinstance(amount, bool) or amount is None:
            raise MoneyError(f"not an amount: {amount!r}")
        code = str(currency).upper()
        amount_minor = to_minor(str(Decimal(str(amount))), code)
    except (MoneyError, ArithmeticError) as exc:
        # The fetched invoice is BTCPay's answer, not the sender's: unusable means
        # BTCPay misbehaves, so let it retry rather than drop a settlement.
        raise ProviderUnavailable(f"BTCPay invoice has no usable amount: {exc}") from exc
    log.info(
        "btcpay invoice %s settled for order %s %s",
        subject.provider_ref,
        subject.order_id,
        notes,
    )
    return subject.settled(
        dedupe_key=dedupe_key, amount_minor=amount_minor, currency=code, notes=notes
    )


def settled_notes(additional_status: str) -> tuple[str, ...]:
    if additional_status == "PaidOver":
        return ("overpaid",)
    if additional_status == "Marked":
        return ("manually marked settled",)
    return ()


def failure_reason(status: Any, additional_status: str) -> str:
    if status == "Expired":
        return "expired, partially paid" if additional_status == "PaidPartial" else "expired"
    if additional_status == "Marked":
        return "manually marked invalid"
    return "invalid"
