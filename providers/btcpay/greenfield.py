"""BTCPay Server, Greenfield API (the default BTCPay mode), over `httpx.AsyncClient`.

Webhooks are only ever a hint: their signature is checked on the raw bytes, then every
invoice event is re-fetched and decided on the fetched invoice (`providers.btcpay.invoices`).
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
from providers.btcpay.invoices import InvoiceDecisions
from providers.btcpay.shapes import Invoice, WebhookBody, is_invoice_id
from providers.btcpay.signature import SIGNATURE_HEADER as SIGNATURE_HEADER
from providers.btcpay.signature import sign_body as sign_body
from providers.btcpay.signature import verify_signature as verify_signature
from providers.errors import ProviderRejected, WebhookPayloadError
from providers.events import PaymentEvent, ProviderName
from providers.ids import is_order_id

log = logging.getLogger(__name__)


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
        self._secret = settings.webhook_secret.get_secret_value()
        self._api = GreenfieldClient(settings, transport=transport)
        self._decisions = InvoiceDecisions(self._api, late_payment=settings.late_payment)
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
        price = Decimal(format_decimal(req.amount_minor, req.currency))
        for invoice in await self._api.invoices_for_order(req.order_id):
            if _payable_for(invoice, req, price, now):
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
        return await self._decisions.for_webhook(hook)

    # -- reconciliation ----------------------------------------------------------------

    async def fetch_status(self, provider_ref: str) -> PaymentEvent | None:
        if not is_invoice_id(provider_ref):
            return None
        invoice = await self._api.fetch_invoice(provider_ref)
        if invoice is None:
            return None
        return await self._decisions.for_status(provider_ref, invoice)


def _payable_for(invoice: Invoice, req: CheckoutRequest, price: Decimal, now: float) -> bool:
    """Whether `invoice` is for exactly `req` (order, `price`, currency) and still payable."""
    if (
        invoice.order_id != req.order_id
        or invoice.currency.upper() != req.currency.upper()
        or invoice.amount is None
        or invoice.amount != price
        or not is_invoice_id(invoice.id)
        or invoice.checkoutLink is None
    ):
        return False
    return invoice.status in ("Processing", "Settled") or (
        invoice.status == "New" and (invoice.expirationTime or 0) > now
    )


def _session(invoice: Invoice) -> CheckoutSession:
    if invoice.checkoutLink is None or not is_invoice_id(invoice.id):
        raise ValueError("invoice without id or checkout link")
    return CheckoutSession(
        provider_ref=invoice.id,
        checkout_url=invoice.checkoutLink,
        expires_at=_unix(invoice.expirationTime),
    )
