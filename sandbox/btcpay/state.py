"""The fake BTCPay store: its invoices and the webhooks their changes send.

Invoices move only through the controls (`pay_in_full`, `pay_partially`, `overpay`,
`expire`, `pay_after_expiry`, `mark_settled`, `mark_invalid`, `fail_to_confirm`, `refund`), each
returning the webhook deliveries real BTCPay would send, byte-shaped like BTCPay's
(Newtonsoft indented camelCase JSON) and signed `BTCPay-Sig: sha256=<hex>`. It speaks no
HTTP: `FakeBTCPay` in sandbox.btcpay.server serves it.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from providers.btcpay.greenfield import sign_body
from sandbox.btcpay.payloads import (
    BASE58,
    Delivery,
    FakeInvoice,
    FakePayment,
    new_id,
    newtonsoft_json,
)


@dataclass
class BTCPayState:
    """The fake's state and its controls; `FakeBTCPay` adds the HTTP app."""

    store_id: str = field(default_factory=lambda: new_id(44))
    api_key: str = field(default_factory=lambda: secrets.token_hex(20))
    webhook_secret: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    webhook_url: str | None = None
    base_url: str | None = None
    # Outage switches: answer every API call with this status, or after this delay.
    outage_status: int | None = None
    # The store's default payment tolerance (percent), used when a create request sets none.
    store_payment_tolerance: float = 0.0
    delay_seconds: float = 0.0
    invoices: dict[str, FakeInvoice] = field(default_factory=dict)
    deliveries: list[Delivery] = field(default_factory=list)
    # (method, path, parsed JSON body) of every API request, for contract checks.
    received: list[tuple[str, str, Any]] = field(default_factory=list)
    pairing_codes: set[str] = field(default_factory=set)
    legacy_tokens: dict[str, str] = field(default_factory=dict)
    webhook_id: str = field(default_factory=new_id)

    # -- controls ------------------------------------------------------------------------

    def create_invoice(
        self,
        *,
        amount: Decimal | str | None,
        currency: str = "USD",
        metadata: dict[str, Any] | None = None,
        checkout: dict[str, Any] | None = None,
        notification_url: str | None = None,
    ) -> tuple[FakeInvoice, list[Delivery]]:
        now = int(time.time())
        options = {
            "speedPolicy": "MediumSpeed",
            "paymentMethods": ["BTC-CHAIN", "BTC-LN"],
            "defaultPaymentMethod": None,
            "lazyPaymentMethods": False,
            "expirationMinutes": 15,
            "monitoringMinutes": 1440,
            "paymentTolerance": self.store_payment_tolerance,
            "redirectURL": None,
            "redirectAutomatically": False,
            "defaultLanguage": None,
        } | (checkout or {})
        invoice = FakeInvoice(
            id=new_id(),
            store_id=self.store_id,
            amount=Decimal(amount) if amount is not None else None,
            currency=currency.upper(),
            metadata=dict(metadata or {}),
            checkout=options,
            created=now,
            expiration=now + int(Decimal(str(options["expirationMinutes"])) * 60),
            notification_url=notification_url,
        )
        self.invoices[invoice.id] = invoice
        return invoice, [self._emit(invoice, "InvoiceCreated", {})]

    def pay_in_full(self, invoice_id: str) -> list[Delivery]:
        """Full payment seen (Processing), then confirmed (Settled)."""
        inv = self.invoices[invoice_id]
        return self._pay(inv, self._due(inv), "None") + self.confirm(invoice_id)

    def receive_full_payment(self, invoice_id: str) -> list[Delivery]:
        """Full payment seen but unconfirmed: New -> Processing."""
        inv = self.invoices[invoice_id]
        return self._pay(inv, self._due(inv), "None")

    def overpay(self, invoice_id: str) -> list[Delivery]:
        inv = self.invoices[invoice_id]
        extra = self._due(inv) + Decimal("0.01")
        return self._pay(inv, extra, "PaidOver") + self.confirm(invoice_id)

    def pay(self, invoice_id: str, value: Decimal) -> list[Delivery]:
        """A payment of `value` (invoice currency) to a New invoice, judged as BTCPay
        does: paid once the accounted total reaches the price less the invoice's
        `paymentTolerance` percent (InvoiceWatcher.UpdateInvoice,
        `accounting.IsPaid(invoice.PaymentTolerance, ...)`); otherwise PaidPartial."""
        inv = self.invoices[invoice_id]
        total = inv.amount if inv.amount is not None else Decimal(0)
        tolerance = Decimal(str(inv.checkout.get("paymentTolerance") or 0))
        if inv.paid + value >= total * (1 - tolerance / 100):
            extra = "PaidOver" if inv.paid + value > total else "None"
            return self._pay(inv, value, extra)
        return self.pay_partially(invoice_id, value)

    def pay_partially(self, invoice_id: str, part: Decimal | None = None) -> list[Delivery]:
        """A payment that does not cover the invoice (half of it unless `part` is given)."""
        inv = self.invoices[invoice_id]
        if part is None:
            part = (self._due(inv) / 2).quantize(Decimal("0.01"))
        payment = self._add_payment(inv, part, "Processing")
        inv.additional_status = "PaidPartial"
        return [self._payment_event(inv, "InvoiceReceivedPayment", payment)]

    def confirm(self, invoice_id: str) -> list[Delivery]:
        """Every unconfirmed payment reaches the confirmation policy.

        BTCPay sends one `InvoicePaymentSettled` per payment (btcpay#4978), then, for a
        Processing invoice, `InvoiceSettled` (`InvoiceEventCode.Confirmed`,
        Plugins/Webhooks/TriggerProviders/InvoiceTriggerProvider.cs). An Expired invoice
        stays Expired: no InvoiceSettled for a late payment (btcpay#3449).
        """
        inv = self.invoices[invoice_id]
        out = []
        for payment in inv.payments:
            if payment.status == "Processing":
                payment.status = "Settled"
                out.append(self._payment_event(inv, "InvoicePaymentSettled", payment))
        if inv.status == "Processing":
            inv.status = "Settled"
            overpaid = inv.additional_status == "PaidOver"
            out.append(
                self._emit(inv, "InvoiceSettled", {"manuallyMarked": False, "overPaid": overpaid})
            )
        return out

    def expire(self, invoice_id: str) -> list[Delivery]:
        inv = self.invoices[invoice_id]
        inv.status = "Expired"
        partial = inv.additional_status == "PaidPartial"
        out = [self._emit(inv, "InvoiceExpired", {"partiallyPaid": partial})]
        if partial:
            out.append(self._emit(inv, "InvoiceExpiredPaidPartial", {}))
        return out

    def pay_after_expiry(
        self,
        invoice_id: str,
        amount: Decimal | None = None,
        *,
        instant: bool = False,
        confirmed: bool = True,
    ) -> list[Delivery]:
        """A payment to an expired invoice (the rest of the price unless `amount` is given).

        What real BTCPay sends, in its order:
        - the invoice expires first (`InvoiceExpired`), before any late payment can be seen
          (InvoiceWatcher.UpdateInvoice: New -> Expired when `expirationTime` passes);
        - on-chain: `InvoiceReceivedPayment` (`afterExpiration: true`), then, once the
          accounted total covers the price, additionalStatus `PaidLate` +
          `InvoicePaidAfterExpiration`; `InvoicePaymentSettled` only when the payment
          confirms (`confirmed=False` leaves it Processing, e.g. an RBF-able transaction);
        - instant methods (Lightning, `instant=True`): the payment is Settled on arrival,
          so `InvoicePaymentSettled` comes *before* the invoice is marked `PaidLate`.
        The invoice stays `Expired`, never Settled (btcpay#3449; notes §2 state machine).
        `afterExpiration` is true because the invoice is Expired when the payment arrives
        (InvoiceTriggerProvider.GetWebhookEvent).
        """
        inv = self.invoices[invoice_id]
        out = self.expire(invoice_id) if inv.status == "New" else []
        value = self._due(inv) if amount is None else Decimal(amount)
        method = "BTC-LN" if instant else "BTC-CHAIN"
        payment = self._add_payment(inv, value, "Settled" if instant else "Processing", method)
        out.append(self._payment_event(inv, "InvoiceReceivedPayment", payment))
        if instant:
            out.append(self._payment_event(inv, "InvoicePaymentSettled", payment))
        covered = self._due(inv) == 0
        if covered and inv.additional_status != "PaidLate":
            inv.additional_status = "PaidLate"
            out.append(self._emit(inv, "InvoicePaidAfterExpiration", {}))
        elif not covered:
            inv.additional_status = "PaidPartial"
        if not instant and confirmed:
            payment.status = "Settled"
            out.append(self._payment_event(inv, "InvoicePaymentSettled", payment))
        return out

    def pay_late_unconfirmed(self, invoice_id: str) -> list[Delivery]:
        return self.pay_after_expiry(invoice_id, confirmed=False)

    def pay_late_instant(self, invoice_id: str) -> list[Delivery]:
        return self.pay_after_expiry(invoice_id, instant=True)

    def mark_settled(self, invoice_id: str) -> list[Delivery]:
        inv = self.invoices[invoice_id]
        inv.status, inv.additional_status = "Settled", "Marked"
        return [self._emit(inv, "InvoiceSettled", {"manuallyMarked": True, "overPaid": False})]

    def mark_invalid(self, invoice_id: str) -> list[Delivery]:
        """Manual marking works on a Settled invoice too (`MarkedInvalid`): the merchant
        withdraws a settlement (notes §2, "Manual marking")."""
        inv = self.invoices[invoice_id]
        inv.status, inv.additional_status = "Invalid", "Marked"
        return [self._emit(inv, "InvoiceInvalid", {"manuallyMarked": True})]

    def fail_to_confirm(self, invoice_id: str) -> list[Delivery]:
        inv = self.invoices[invoice_id]
        inv.status, inv.additional_status = "Invalid", "None"
        return [self._emit(inv, "InvoiceInvalid", {"manuallyMarked": False})]

    def refund(self, invoice_id: str) -> list[Delivery]:
        """The merchant refunds the invoice: BTCPay creates a pull payment for the buyer and
        sends `InvoiceRefund` with its id (v2.4.1+, InvoiceTriggerProvider:
        `InvoiceEventCode.Refund => WebhookInvoiceRefundEvent { PullPaymentId }`). The
        invoice's own status does not change."""
        inv = self.invoices[invoice_id]
        inv.refunds.append(new_id())
        return [self._emit(inv, "InvoiceRefund", {"pullPaymentId": inv.refunds[-1]})]

    def redeliver(self, delivery: Delivery) -> Delivery:
        """BTCPay's retry: a new deliveryId, same originalDeliveryId, isRedelivery true."""
        payload = json.loads(delivery.body)
        payload["deliveryId"] = new_id()
        payload["isRedelivery"] = True
        payload["timestamp"] = int(time.time())
        return self._sign(delivery.event_type, delivery.invoice_id, payload)

    def issue_pairing_code(self) -> str:
        code = "".join(secrets.choice(BASE58) for _ in range(7))
        self.pairing_codes.add(code)
        return code

    def legacy_ipn(self, invoice_id: str, *, status: str | None = None) -> bytes:
        """The unsigned IPN body (non-extended: the bare `data` object)."""
        return json.dumps(self.invoices[invoice_id].legacy(self._base(), status=status)).encode()

    # -- internals -----------------------------------------------------------------------

    def _base(self) -> str:
        return (self.base_url or "http://btcpay.test").rstrip("/")

    @staticmethod
    def _due(inv: FakeInvoice) -> Decimal:
        total = inv.amount if inv.amount is not None else Decimal("1.00")
        return max(total - inv.paid, Decimal(0))

    def _add_payment(
        self, inv: FakeInvoice, value: Decimal, status: str, method: str = "BTC-CHAIN"
    ) -> FakePayment:
        payment = FakePayment(
            id=secrets.token_hex(32) + "-0",
            method=method,
            fiat=value,
            status=status,
            received=int(time.time()),
        )
        inv.payments.append(payment)
        return payment

    def _pay(self, inv: FakeInvoice, value: Decimal, extra: str) -> list[Delivery]:
        payment = self._add_payment(inv, value, "Processing")
        inv.status, inv.additional_status = "Processing", extra
        return [
            self._payment_event(inv, "InvoiceReceivedPayment", payment),
            self._emit(inv, "InvoiceProcessing", {"overPaid": extra == "PaidOver"}),
        ]

    def _payment_event(self, inv: FakeInvoice, event_type: str, payment: FakePayment) -> Delivery:
        fields = {
            # True when the invoice is Expired or Invalid as the payment is seen
            # (InvoiceTriggerProvider.GetWebhookEvent).
            "afterExpiration": inv.status in ("Expired", "Invalid"),
            "paymentMethodId": payment.method,
            "payment": payment.model(f"bcrt1qfake{inv.id.lower()}"),
        }
        return self._emit(inv, event_type, fields)

    def _emit(self, inv: FakeInvoice, event_type: str, fields: dict[str, Any]) -> Delivery:
        delivery_id = new_id()
        payload = {
            "deliveryId": delivery_id,
            "webhookId": self.webhook_id,
            "originalDeliveryId": delivery_id,
            "isRedelivery": False,
            "type": event_type,
            "timestamp": int(time.time()),
            **fields,
            "storeId": inv.store_id,
            "invoiceId": inv.id,
            "metadata": inv.metadata,
        }
        delivery = self._sign(event_type, inv.id, payload)
        self.deliveries.append(delivery)
        return delivery

    def _sign(self, event_type: str, invoice_id: str, payload: dict[str, Any]) -> Delivery:
        body = newtonsoft_json(payload)
        headers = {
            "content-type": "application/json; charset=utf-8",
            "btcpay-sig": sign_body(self.webhook_secret, body),
        }
        return Delivery(
            event_type=event_type,
            invoice_id=invoice_id,
            delivery_id=payload["deliveryId"],
            original_delivery_id=payload["originalDeliveryId"],
            body=body,
            headers=headers,
        )
