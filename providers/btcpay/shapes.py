"""BTCPay's payload shapes, parsed once at the boundary (pydantic), and the id checks that
guard every BTCPay URL we build.

A signed webhook can still carry something we cannot use (a list where an object belongs,
an `invoiceId` with control characters or `%2e%2e%2f`): typed parsing turns that into one
`ValidationError` here, answered 4xx or ignored with a logged reason, never a 500 deeper in.
"""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field

from config.money import MoneyError, exponent
from providers.errors import ProviderUnavailable

# BTCPay invoice ids are base58 (22 characters today, other lengths in old versions); the
# retired "Test webhook" button sent `__test__<guid>__test__`. Nothing else goes in a URL.
INVOICE_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")


def is_invoice_id(value: object) -> bool:
    return isinstance(value, str) and INVOICE_ID_RE.fullmatch(value) is not None


def segment(value: str) -> str:
    """One URL path segment, escaped even though callers shape-check it first."""
    return quote(value, safe="")


class _Shape(BaseModel):
    # BTCPay adds fields between versions: unknown keys are fine, wrong types are not.
    model_config = ConfigDict(extra="ignore", frozen=True)


# Ids that become part of a dedupe key (a payment's txid-vout or Lightning hash, a refund's
# pull payment id): printable only, since PostgreSQL refuses NUL in text and answering 503
# would have BTCPay redeliver the event for days.
_PRINTABLE = r"^[^\x00-\x1f\x7f]+$"


class WebhookPayment(_Shape):
    id: str = Field(min_length=1, max_length=128, pattern=_PRINTABLE)
    status: str | None = Field(default=None, max_length=32)


class WebhookBody(_Shape):
    """The fields of a Greenfield webhook we read (WebhookInvoiceEvent and subtypes)."""

    type: str = Field(min_length=1, max_length=100)
    invoiceId: str | None = Field(default=None, max_length=200)
    afterExpiration: bool | None = None
    manuallyMarked: bool | None = None
    payment: WebhookPayment | None = None
    pullPaymentId: str | None = Field(default=None, max_length=200, pattern=_PRINTABLE)


class _IpnData(_Shape):
    id: str | None = Field(default=None, max_length=200)


class LegacyIpn(_Shape):
    """A legacy (BitPay) IPN: the bare `data` object, or `{"event", "data"}` when extended
    (BitpayIPNSender.SendNotification). Unsigned: only the invoice id is read from it."""

    id: str | None = Field(default=None, max_length=200)
    data: _IpnData | None = None

    @property
    def invoice_id(self) -> str | None:
        return self.data.id if self.data is not None else self.id


class Invoice(_Shape):
    """A Greenfield `InvoiceData` as fetched from BTCPay (the only source we trust)."""

    id: str
    status: str
    additionalStatus: str = "None"
    amount: Decimal | None = None
    paidAmount: Decimal | None = None
    currency: str = Field(min_length=3, max_length=10)
    metadata: dict[str, Any] = Field(default_factory=dict)
    checkoutLink: str | None = None
    expirationTime: int | None = None

    @property
    def order_id(self) -> Any:
        return self.metadata.get("orderId")


class Payment(_Shape):
    value: Decimal
    status: str


class PaymentMethod(_Shape):
    """One entry of `GET .../invoices/{id}/payment-methods` (InvoicePaymentMethodDataModel)."""

    paymentMethodId: str
    # Invoice currency per unit of this method's currency.
    rate: Decimal
    payments: list[Payment] = Field(default_factory=list)


def settled_value(methods: list[PaymentMethod]) -> Decimal:
    """What the `Settled` payments are worth in the invoice currency, at BTCPay's rates.

    `paidAmount` and BTCPay's `PaidLate` count *accounted* payments, which include
    unconfirmed (replaceable) ones (`PaymentEntity.Accounted => Status is Settled or
    Processing`, BTCPayServer/Services/Invoices/InvoiceEntity.cs); only `Settled` payments
    reached the store's confirmation policy.
    """
    total = Decimal(0)
    for method in methods:
        for payment in method.payments:
            if payment.status == "Settled":
                total += payment.value * method.rate
    return total


def nearest_minor(amount: Decimal, currency: str) -> int:
    """Minor units, to the nearest one. BTCPay converts satoshis back at its rate, so a
    payment BTCPay judged complete can come out a hair under the price (9.98999...): less
    than half a minor unit is rounding, not underpayment; a real shortfall stays short."""
    try:
        scaled = amount.scaleb(exponent(currency))
        return int(scaled.to_integral_value(rounding=ROUND_HALF_UP))
    except (MoneyError, ArithmeticError) as exc:
        # A fetched invoice is BTCPay's answer, not the sender's: let BTCPay retry.
        raise ProviderUnavailable(f"BTCPay invoice has no usable amount: {exc}") from exc
