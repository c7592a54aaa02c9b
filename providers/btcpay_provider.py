"""BTCPay Server, Greenfield API (the default BTCPay mode), over `httpx.AsyncClient`.

Webhooks are only ever a hint: their signature is checked on the raw bytes, then every
invoice event is re-fetched and decided on the fetched `status` + `additionalStatus`,
because settle payloads carry no amount and BTCPay's webhook booleans (`overPaid`,
`afterExpiration`) have regressed before (see ../shared/notes/btcpay.md §7).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx

from config.money import MoneyError, format_decimal, to_minor
from config.settings import BtcpaySettings, SettingsError, env_name
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
    PaymentSettled,
    ProviderName,
)

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "btcpay-sig"
_PENDING_TYPES = frozenset({"InvoiceReceivedPayment", "InvoicePaymentSettled", "InvoiceProcessing"})
_FAILED_TYPES = frozenset({"InvoiceExpired", "InvoiceInvalid"})
# Sent by BTCPay >= 2.1.2 when a full payment arrives after expiry; not in the spec.
_PAID_LATE_TYPE = "InvoicePaidAfterExpiration"
# Late payments settle only on the event that says a payment reached the store's
# confirmation policy; InvoiceReceivedPayment / InvoicePaidAfterExpiration can fire for an
# unconfirmed (double-spendable) transaction.
_LATE_SETTLE_TYPES = frozenset({"InvoicePaymentSettled"})


def sign_body(secret: str, body: bytes) -> str:
    """The `BTCPay-Sig` header value BTCPay sends for `body`."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def verify_signature(secret: str, body: bytes, header: str | None) -> None:
    """Raise `WebhookSignatureError` unless `header` is BTCPay's HMAC over `body`."""
    if not header:
        raise WebhookSignatureError("missing BTCPay-Sig header")
    scheme, sep, digest = header.strip().partition("=")
    if not sep or scheme.lower() != "sha256":
        raise WebhookSignatureError("BTCPay-Sig is not of the form sha256=<hex>")
    try:
        got = bytes.fromhex(digest)
    except ValueError as exc:
        raise WebhookSignatureError("BTCPay-Sig digest is not hex") from exc
    want = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).digest()
    if not hmac.compare_digest(got, want):
        raise WebhookSignatureError("BTCPay-Sig does not match the body")


def _unix(value: Any) -> datetime | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC)
    return None


def _error_message(response: httpx.Response) -> str:
    """BTCPay's own words: `{"message"}` for API errors, `[{"path","message"}]` for 422."""
    try:
        data = response.json()
    except ValueError:
        return response.text[:200] or response.reason_phrase
    if isinstance(data, dict) and "message" in data:
        return str(data["message"])
    if isinstance(data, list):
        parts = [
            f"{item.get('path')}: {item.get('message')}" for item in data if isinstance(item, dict)
        ]
        if parts:
            return "; ".join(parts)
    return response.text[:200]


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
        self._client = httpx.AsyncClient(
            base_url=str(settings.url).rstrip("/"),
            headers={
                "Authorization": f"token {settings.api_key.get_secret_value()}",
                "Accept": "application/json",
            },
            timeout=settings.timeout_seconds,
            # A redirect would turn the POST into a GET that lists invoices (btcpay#2035).
            follow_redirects=False,
            transport=transport,
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    # -- API calls ---------------------------------------------------------------------

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = await self._client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ProviderUnavailable(f"BTCPay unreachable: {type(exc).__name__}") from exc
        if response.status_code >= 500 or response.status_code in (408, 429):
            raise ProviderUnavailable(f"BTCPay answered {response.status_code}")
        return response

    async def create_checkout(self, req: CheckoutRequest) -> CheckoutSession:
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
                "redirectURL": req.success_url,
            },
        }
        response = await self._request(
            "POST", f"/api/v1/stores/{self._store_id}/invoices", json=payload
        )
        try:
            response.raise_for_status()
        except httpx.HTTPStatusError as exc:
            raise ProviderRejected(
                f"BTCPay refused the invoice ({response.status_code}): {_error_message(response)}"
            ) from exc
        try:
            invoice = response.json()
            session = CheckoutSession(
                provider_ref=str(invoice["id"]),
                checkout_url=str(invoice["checkoutLink"]),
                expires_at=_unix(invoice.get("expirationTime")),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise ProviderRejected("BTCPay returned an unreadable invoice") from exc
        log.info("btcpay invoice %s created for order %s", session.provider_ref, req.order_id)
        return session

    async def fetch_invoice(self, invoice_id: str) -> dict[str, Any] | None:
        """The invoice as BTCPay knows it now; None if BTCPay does not know it (404)."""
        response = await self._request(
            "GET", f"/api/v1/stores/{self._store_id}/invoices/{invoice_id}"
        )
        if response.status_code == 404:
            return None
        try:
            response.raise_for_status()
        except httpx.HTTPStatusError as exc:
            raise ProviderRejected(
                f"BTCPay refused to show invoice {invoice_id} ({response.status_code}): "
                f"{_error_message(response)}"
            ) from exc
        try:
            invoice = response.json()
        except ValueError as exc:
            raise ProviderUnavailable("BTCPay returned invalid JSON for an invoice") from exc
        if not isinstance(invoice, dict):
            raise ProviderUnavailable("BTCPay returned a non-object invoice")
        return invoice

    # -- webhooks ----------------------------------------------------------------------

    async def parse_webhook(self, body: bytes, headers: Mapping[str, str]) -> list[PaymentEvent]:
        verify_signature(self._secret, body, headers.get(SIGNATURE_HEADER))
        try:
            payload = json.loads(body)
        except ValueError as exc:
            raise WebhookPayloadError("BTCPay webhook body is not JSON") from exc
        if not isinstance(payload, dict) or not isinstance(payload.get("type"), str):
            raise WebhookPayloadError("BTCPay webhook has no event type")
        return [await self._event(payload)]

    async def _event(self, payload: dict[str, Any]) -> PaymentEvent:
        event_type: str = payload["type"]
        invoice_id = payload.get("invoiceId")
        actionable = _PENDING_TYPES | _FAILED_TYPES | {"InvoiceSettled", _PAID_LATE_TYPE}
        if event_type not in actionable:
            return Ignored(provider=self.name, reason=f"event type {event_type} not acted on")
        if not isinstance(invoice_id, str) or not invoice_id:
            raise WebhookPayloadError(f"BTCPay {event_type} webhook has no invoiceId")
        if invoice_id.startswith("__test__"):
            return Ignored(provider=self.name, reason="BTCPay test event", provider_ref=invoice_id)
        invoice = await self.fetch_invoice(invoice_id)
        if invoice is None:
            return Ignored(
                provider=self.name,
                reason=f"invoice {invoice_id} unknown to BTCPay",
                provider_ref=invoice_id,
            )
        webhook_meta = payload.get("metadata")
        return self._decide(event_type, invoice_id, invoice, webhook_meta)

    def _decide(
        self, event_type: str, invoice_id: str, invoice: dict[str, Any], webhook_meta: Any
    ) -> PaymentEvent:
        status = invoice.get("status")
        extra = invoice.get("additionalStatus") or "None"
        order_id = _order_id(invoice.get("metadata")) or _order_id(webhook_meta)
        common: dict[str, Any] = {
            "provider": self.name,
            "provider_ref": invoice_id,
            "order_id": order_id,
            "occurred_at": datetime.now(UTC),
        }
        if event_type == "InvoiceSettled":
            if status != "Settled" or extra == "PaidPartial":
                log.warning(
                    "btcpay InvoiceSettled for %s (order %s) but invoice is %s/%s: not settling",
                    invoice_id,
                    order_id,
                    status,
                    extra,
                )
                return Ignored(
                    provider=self.name,
                    reason=f"InvoiceSettled but the invoice is {status}/{extra}",
                    provider_ref=invoice_id,
                )
            return self._settled(invoice, f"{invoice_id}:InvoiceSettled", _notes(extra), common)
        if status == "Expired" and extra == "PaidLate" and event_type not in _FAILED_TYPES:
            return self._paid_late(event_type, invoice, common)
        if event_type in _FAILED_TYPES:
            if status not in ("Expired", "Invalid"):
                return Ignored(
                    provider=self.name,
                    reason=f"{event_type} but the invoice is now {status}",
                    provider_ref=invoice_id,
                )
            return PaymentFailed(
                **common, dedupe_key=f"{invoice_id}:{event_type}", reason=_failure(status, extra)
            )
        detail = f"{event_type}: invoice {status}"
        if extra != "None":
            detail += f" ({extra})"
        return PaymentPending(**common, dedupe_key=f"{invoice_id}:{event_type}", detail=detail)

    def _paid_late(
        self, event_type: str, invoice: dict[str, Any], common: dict[str, Any]
    ) -> PaymentEvent:
        invoice_id = common["provider_ref"]
        if event_type not in _LATE_SETTLE_TYPES:
            return PaymentPending(
                **common,
                dedupe_key=f"{invoice_id}:{event_type}",
                detail="paid in full after expiration; waiting for the payment to confirm",
            )
        if self._settings.late_payment == "settle":
            return self._settled(
                invoice, f"{invoice_id}:PaidLate", ("paid after expiration",), common
            )
        return PaymentPending(
            **common,
            dedupe_key=f"{invoice_id}:PaidLate",
            detail=(
                "paid in full after expiration; BTCPay will not settle it by itself "
                "(late_payment=review): review, then mark it settled in BTCPay or refund"
            ),
        )

    def _settled(
        self,
        invoice: dict[str, Any],
        dedupe_key: str,
        notes: tuple[str, ...],
        common: dict[str, Any],
    ) -> PaymentSettled:
        return settled_event(
            invoice.get("amount"),
            invoice.get("currency"),
            dedupe_key=dedupe_key,
            notes=notes,
            common=common,
        )

    # -- reconciliation ----------------------------------------------------------------

    async def fetch_status(self, provider_ref: str) -> PaymentEvent | None:
        invoice = await self.fetch_invoice(provider_ref)
        if invoice is None:
            return None
        status = invoice.get("status")
        extra = invoice.get("additionalStatus") or "None"
        common: dict[str, Any] = {
            "provider": self.name,
            "provider_ref": provider_ref,
            "order_id": _order_id(invoice.get("metadata")),
            "occurred_at": datetime.now(UTC),
        }
        # Same dedupe keys as the webhooks, so whichever arrives second is a duplicate.
        if status == "Settled" and extra != "PaidPartial":
            key = f"{provider_ref}:InvoiceSettled"
            return self._settled(invoice, key, _notes(extra), common)
        if status == "Expired" and extra == "PaidLate":
            # The invoice alone does not say whether the late payment confirmed; the
            # InvoicePaymentSettled webhook (or the seller) decides.
            return PaymentPending(
                **common,
                dedupe_key=f"{provider_ref}:{_PAID_LATE_TYPE}",
                detail="paid in full after expiration",
            )
        if status in ("Expired", "Invalid"):
            event_type = "InvoiceExpired" if status == "Expired" else "InvoiceInvalid"
            return PaymentFailed(
                **common, dedupe_key=f"{provider_ref}:{event_type}", reason=_failure(status, extra)
            )
        if status == "Processing":
            return PaymentPending(
                **common, dedupe_key=f"{provider_ref}:InvoiceProcessing", detail="Processing"
            )
        return None


def settled_event(
    amount: Any,
    currency: Any,
    *,
    dedupe_key: str,
    notes: tuple[str, ...],
    common: dict[str, Any],
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
        common["provider_ref"],
        common["order_id"],
        notes,
    )
    return PaymentSettled(
        **common, dedupe_key=dedupe_key, amount_minor=amount_minor, currency=code, notes=notes
    )


def _order_id(metadata: Any) -> str | None:
    if isinstance(metadata, dict):
        value = metadata.get("orderId")
        if isinstance(value, str) and value:
            return value
    return None


def _notes(additional_status: str) -> tuple[str, ...]:
    if additional_status == "PaidOver":
        return ("overpaid",)
    if additional_status == "Marked":
        return ("manually marked settled",)
    return ()


def _failure(status: Any, additional_status: str) -> str:
    if status == "Expired":
        return "expired, partially paid" if additional_status == "PaidPartial" else "expired"
    if additional_status == "Marked":
        return "manually marked invalid"
    return "invalid"
