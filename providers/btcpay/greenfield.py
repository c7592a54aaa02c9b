"""BTCPay Server, Greenfield API (the default BTCPay mode), over `httpx.AsyncClient`.

Webhooks are only ever a hint: their signature is checked on the raw bytes, then every
invoice event is re-fetched and decided on the fetched `status` + `additionalStatus`,
because settle payloads carry no amount and BTCPay's webhook booleans (`overPaid`,
`afterExpiration`) have regressed before (see ../shared/notes/btcpay.md §7).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
from pydantic import ValidationError

from config.money import format_decimal
from config.settings import BtcpaySettings, SettingsError, env_name
from providers.base import CheckoutRequest, CheckoutSession
from providers.btcpay.client import GreenfieldClient
from providers.btcpay.events import failure_reason, paid_minor, price_minor, settled_notes
from providers.btcpay.shapes import Invoice, WebhookBody, is_invoice_id, nearest_minor
from providers.btcpay.signature import SIGNATURE_HEADER as SIGNATURE_HEADER
from providers.btcpay.signature import sign_body as sign_body
from providers.btcpay.signature import verify_signature as verify_signature
from providers.errors import (
    ProviderRejected,
    WebhookPayloadError,
)
from providers.events import (
    Ignored,
    PaymentEvent,
    PaymentFailed,
    PaymentNeedsReview,
    PaymentPending,
    PaymentReversed,
    PaymentSettled,
    ProviderName,
)
from providers.ids import is_order_id

log = logging.getLogger(__name__)

_PENDING_TYPES = frozenset({"InvoiceReceivedPayment", "InvoicePaymentSettled", "InvoiceProcessing"})
_FAILED_TYPES = frozenset({"InvoiceExpired", "InvoiceInvalid"})
# Sent by BTCPay >= 2.1.2 when a full payment arrives after expiry; not in the spec.
_PAID_LATE_TYPE = "InvoicePaidAfterExpiration"
# BTCPay >= 2.4.1, when the merchant refunds an invoice; not in the spec either.
_REFUND_TYPE = "InvoiceRefund"
_ACTIONABLE = _PENDING_TYPES | _FAILED_TYPES | {"InvoiceSettled", _PAID_LATE_TYPE, _REFUND_TYPE}


def _unix(value: Any) -> datetime | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC)
    return None


class BTCPayProvider:
    name = ProviderName.BTCPAY

    def __init__(
        self, settings: BtcpaySettings, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        missing = [
            env_name("btcpay", field)
            for field in ("url", "store_id", "api_key", "webhook_secret")
            if getattr(settings, field) is None
        ]
        if missing or settings.api_key is None or settings.webhook_secret is None:
            raise SettingsError(f"BTCPay Greenfield mode needs {', '.join(missing)}")
        self._settings = settings
        self._store_id = str(settings.store_id)
        self._secret = settings.webhook_secret.get_secret_value()
        self._api = GreenfieldClient(settings, transport=transport)
        log.info(
            "btcpay greenfield: late payments (after the invoice expired) %s",
            "settle once their settled payments cover the price"
            if settings.late_payment == "settle"
            else "go to review (late_payment=review)",
        )

    async def aclose(self) -> None:
        await self._api.aclose()

    # -- API calls ---------------------------------------------------------------------

    async def create_checkout(self, req: CheckoutRequest) -> CheckoutSession:
        existing = await self._live_invoice_for(req)
        if existing is not None:
            log.info("btcpay invoice %s reused for order %s", existing.provider_ref, req.order_id)
            return existing
        payload = {
            "amount": format_decimal(req.amount_minor, req.currency),
            "currency": req.currency.upper(),
            "metadata": {
                "orderId": req.order_id,
                "buyerEmail": req.buyer_email,
                "itemDesc": req.description or req.product_name,
                "itemCode": req.product_id,
            },
            "checkout": {
                "speedPolicy": self._settings.speed_policy,
                "expirationMinutes": self._settings.expiration_minutes,
                # A store-wide tolerance would settle an underpaid invoice (10% = 8.99 of
                # 9.99); ours is zero, and the gateway compares what was paid anyway.
                "paymentTolerance": 0,
                "redirectURL": req.success_url,
            },
        }
        invoice = await self._api.create_invoice(payload)
        try:
            session = _session(invoice)
        except ValueError as exc:
            raise ProviderRejected("BTCPay returned an unreadable invoice") from exc
        log.info("btcpay invoice %s created for order %s", session.provider_ref, req.order_id)
        return session

    async def _live_invoice_for(self, req: CheckoutRequest) -> CheckoutSession | None:
        """An invoice BTCPay already has for this order that the buyer can still pay.

        A retried create (the first answer lost, or a second request racing it) must not
        make a second invoice: the buyer would pay one while the order points at the other.
        BTCPay indexes `metadata.orderId` (`GET .../invoices?orderId=`).
        """
        if not is_order_id(req.order_id):
            return None
        now = datetime.now(UTC).timestamp()
        want = format_decimal(req.amount_minor, req.currency)
        for invoice in await self._api.invoices_for_order(req.order_id):
            if (
                invoice.order_id != req.order_id
                or invoice.currency.upper() != req.currency.upper()
                or invoice.amount is None
                or invoice.amount != Decimal(want)
                or not is_invoice_id(invoice.id)
                or invoice.checkoutLink is None
            ):
                continue
            live = invoice.status in ("Processing", "Settled") or (
                invoice.status == "New" and (invoice.expirationTime or 0) > now
            )
            if live:
                return _session(invoice)
        return None

    # -- webhooks ----------------------------------------------------------------------

    async def parse_webhook(self, body: bytes, headers: Mapping[str, str]) -> list[PaymentEvent]:
        verify_signature(self._secret, body, headers.get(SIGNATURE_HEADER))
        try:
            hook = WebhookBody.model_validate_json(body)
        except ValidationError as exc:
            where = ", ".join(".".join(map(str, e["loc"])) or "body" for e in exc.errors()[:3])
            raise WebhookPayloadError(f"BTCPay webhook payload unusable at {where}") from exc
        return await self._events(hook)

    async def _events(self, hook: WebhookBody) -> list[PaymentEvent]:
        event_type = hook.type
        invoice_id = hook.invoiceId
        if event_type not in _ACTIONABLE:
            return [Ignored(provider=self.name, reason=f"event type {event_type} not acted on")]
        if not invoice_id:
            raise WebhookPayloadError(f"BTCPay {event_type} webhook has no invoiceId")
        if invoice_id.startswith("__test__"):
            return [Ignored(provider=self.name, reason="BTCPay test event")]
        if not is_invoice_id(invoice_id):
            log.warning("btcpay %s webhook with a malformed invoiceId: ignored", event_type)
            return [Ignored(provider=self.name, reason="invoiceId is not a BTCPay invoice id")]
        invoice = await self._api.fetch_invoice(invoice_id)
        if invoice is None:
            return [
                Ignored(
                    provider=self.name,
                    reason=f"invoice {invoice_id} unknown to BTCPay",
                    provider_ref=invoice_id,
                )
            ]
        if not is_order_id(invoice.order_id):
            # Another app on the same store (its own orderId) or an invoice made by hand.
            log.info("btcpay %s for invoice %s: not one of our orders", event_type, invoice_id)
            return [
                Ignored(
                    provider=self.name,
                    reason="invoice is not for one of our orders",
                    provider_ref=invoice_id,
                )
            ]
        return await self._decide(hook, invoice)

    def _common(self, invoice: Invoice) -> dict[str, Any]:
        return {
            "provider": self.name,
            "provider_ref": invoice.id,
            "order_id": invoice.order_id if is_order_id(invoice.order_id) else None,
            "occurred_at": datetime.now(UTC),
        }

    async def _decide(self, hook: WebhookBody, invoice: Invoice) -> list[PaymentEvent]:
        event_type, invoice_id = hook.type, invoice.id
        status, extra = invoice.status, invoice.additionalStatus or "None"
        common = self._common(invoice)
        if event_type == "InvoiceRefund":
            return [self._refunded(hook, common)]
        if event_type == "InvoiceSettled":
            if status != "Settled" or extra == "PaidPartial":
                log.warning(
                    "btcpay InvoiceSettled for %s (order %s) but invoice is %s/%s: not settling",
                    invoice_id,
                    common["order_id"],
                    status,
                    extra,
                )
                return [
                    Ignored(
                        provider=self.name,
                        reason=f"InvoiceSettled but the invoice is {status}/{extra}",
                        provider_ref=invoice_id,
                    )
                ]
            return [self._settled(invoice, f"{invoice_id}:InvoiceSettled", common)]
        if event_type in _FAILED_TYPES:
            if status not in ("Expired", "Invalid"):
                return [
                    Ignored(
                        provider=self.name,
                        reason=f"{event_type} but the invoice is now {status}",
                        provider_ref=invoice_id,
                    )
                ]
            failed = PaymentFailed(
                **common,
                dedupe_key=f"{invoice_id}:{event_type}",
                reason=failure_reason(status, extra),
                by_seller=status == "Invalid" and extra == "Marked",
            )
            if status == "Invalid" and extra == "Marked":
                # Marking works on a Settled invoice too: the merchant withdrew the
                # settlement. Failed moves an unpaid order; the reversal revokes a paid one.
                reversed_ = PaymentReversed(
                    **common,
                    payment_ref=invoice_id,
                    dedupe_key=f"{invoice_id}:InvoiceInvalid:reversed",
                    reason="manually marked invalid in BTCPay",
                    settled_only=True,
                )
                return [failed, reversed_]
            return [failed]
        if status == "Expired" and extra == "PaidLate":
            return [await self._paid_late(invoice, common)]
        if status in ("Expired", "Invalid"):
            # A payment to a dead invoice that BTCPay has not marked PaidLate (yet): an
            # instant payment is Settled before the invoice is updated, or it is only part
            # of the price. Genuine, but nothing to apply now: re-check soon, keep no slot.
            return [
                Ignored(
                    provider=self.name,
                    reason=f"{event_type} on a {status}/{extra} invoice: re-check later",
                    provider_ref=invoice_id,
                    recheck_soon=True,
                )
            ]
        detail = f"{event_type}: invoice {status}"
        if extra != "None":
            detail += f" ({extra})"
        # One slot per payment: a second partial payment must update the amount paid.
        suffix = f":{hook.payment.id}" if hook.payment is not None else ""
        return [
            PaymentPending(
                **common,
                dedupe_key=f"{invoice_id}:{event_type}{suffix}",
                detail=detail,
                amount_paid_minor=paid_minor(invoice),
            )
        ]

    def _refunded(self, hook: WebhookBody, common: dict[str, Any]) -> PaymentReversed:
        """`InvoiceRefund`: the merchant gave the money back (a refund pull payment for the
        buyer, BTCPay 2.4.1+). The invoice itself keeps its status, so the event decides."""
        invoice_id = common["provider_ref"]
        pull = hook.pullPaymentId or ""
        return PaymentReversed(
            **common,
            payment_ref=invoice_id,
            dedupe_key=f"{invoice_id}:InvoiceRefund:{pull}"[:255],
            reason="refunded in BTCPay" + (f" (pull payment {pull})" if pull else ""),
        )

    async def _paid_late(self, invoice: Invoice, common: dict[str, Any]) -> PaymentEvent:
        """Expired + PaidLate: BTCPay's PaidLate counts unconfirmed payments, so under
        `settle` only the *settled* payments may settle the order."""
        invoice_id = invoice.id
        if self._settings.late_payment == "review":
            return PaymentNeedsReview(
                **common,
                dedupe_key=f"{invoice_id}:PaidLate",
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
                invoice_id,
                settled,
                price,
                invoice.currency,
            )
            return Ignored(
                provider=self.name,
                reason=f"paid late; {settled} of {price} minor units settled so far",
                provider_ref=invoice_id,
                recheck_soon=True,
            )
        return self._event_settled(
            settled, invoice, f"{invoice_id}:PaidLate", ("paid after expiration",), common
        )

    def _settled(self, invoice: Invoice, dedupe_key: str, common: dict[str, Any]) -> PaymentSettled:
        extra = invoice.additionalStatus or "None"
        if extra == "Marked" or invoice.paidAmount is None:
            # Marked settled by the merchant: their word is the payment, whatever arrived.
            amount = price_minor(invoice.amount, invoice.currency)
        else:
            amount = nearest_minor(invoice.paidAmount, invoice.currency)
        return self._event_settled(amount, invoice, dedupe_key, settled_notes(extra), common)

    def _event_settled(
        self,
        amount_minor: int,
        invoice: Invoice,
        dedupe_key: str,
        notes: tuple[str, ...],
        common: dict[str, Any],
    ) -> PaymentSettled:
        log.info(
            "btcpay invoice %s settled for order %s: %s minor units %s",
            invoice.id,
            common["order_id"],
            amount_minor,
            notes,
        )
        return PaymentSettled(
            **common,
            # One invoice is one payment for us: reversals name the same invoice.
            payment_ref=invoice.id,
            dedupe_key=dedupe_key,
            amount_minor=amount_minor,
            currency=invoice.currency.upper(),
            notes=notes,
        )

    # -- reconciliation ----------------------------------------------------------------

    async def fetch_status(self, provider_ref: str) -> PaymentEvent | None:
        if not is_invoice_id(provider_ref):
            return None
        invoice = await self._api.fetch_invoice(provider_ref)
        if invoice is None:
            return None
        status = invoice.status
        extra = invoice.additionalStatus or "None"
        common = self._common(invoice)
        # Same dedupe keys as the webhooks, so whichever arrives second is a duplicate.
        if status == "Settled" and extra != "PaidPartial":
            return self._settled(invoice, f"{provider_ref}:InvoiceSettled", common)
        if status == "Expired" and extra == "PaidLate":
            return await self._paid_late(invoice, common)
        if status in ("Expired", "Invalid"):
            event_type = "InvoiceExpired" if status == "Expired" else "InvoiceInvalid"
            return PaymentFailed(
                **common,
                dedupe_key=f"{provider_ref}:{event_type}",
                reason=failure_reason(status, extra),
                by_seller=status == "Invalid" and extra == "Marked",
            )
        if status == "Processing":
            return PaymentPending(
                **common,
                dedupe_key=f"{provider_ref}:InvoiceProcessing",
                detail="Processing",
                amount_paid_minor=paid_minor(invoice),
            )
        return None


def _session(invoice: Invoice) -> CheckoutSession:
    if invoice.checkoutLink is None or not is_invoice_id(invoice.id):
        raise ValueError("invoice without id or checkout link")
    return CheckoutSession(
        provider_ref=invoice.id,
        checkout_url=invoice.checkoutLink,
        expires_at=_unix(invoice.expirationTime),
    )
