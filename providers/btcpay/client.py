"""The Greenfield HTTP calls the provider makes, each id shape-checked and path-escaped
before it goes into a URL, and each answer parsed into a typed shape."""

from __future__ import annotations

import logging
from typing import Any

import httpx
from pydantic import ValidationError

from config.settings import BtcpaySettings
from providers.btcpay.shapes import (
    Invoice,
    PaymentMethod,
    is_invoice_id,
    nearest_minor,
    segment,
    settled_value,
)
from providers.errors import ProviderRejected, ProviderUnavailable, WebhookPayloadError

log = logging.getLogger("providers.btcpay.greenfield")


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


class GreenfieldClient:
    """`Authorization: token <key>`, store-scoped paths, no redirects, BTCPay's own errors."""

    def __init__(
        self, settings: BtcpaySettings, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        assert settings.api_key is not None  # checked by the provider
        self._store_id = str(settings.store_id)
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

    def _invoices_path(self, invoice_id: str | None = None, suffix: str = "") -> str:
        path = f"/api/v1/stores/{segment(self._store_id)}/invoices"
        if invoice_id is not None:
            if not is_invoice_id(invoice_id):
                # Callers check first; this is the last line before a URL is built.
                raise WebhookPayloadError("not a BTCPay invoice id")
            path += f"/{segment(invoice_id)}{suffix}"
        return path

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = await self._client.request(method, path, **kwargs)
        except httpx.InvalidURL as exc:
            # Ids are shape-checked before they get here; never let one become a 500.
            raise WebhookPayloadError("not a usable BTCPay URL") from exc
        except httpx.HTTPError as exc:
            raise ProviderUnavailable(f"BTCPay unreachable: {type(exc).__name__}") from exc
        if response.status_code >= 500 or response.status_code in (408, 429):
            raise ProviderUnavailable(f"BTCPay answered {response.status_code}")
        return response

    async def _get_json(self, path: str, what: str, **kwargs: Any) -> Any:
        """GET `path`; None on 404; BTCPay's words on any other refusal."""
        response = await self._request("GET", path, **kwargs)
        if response.status_code == 404:
            return None
        try:
            response.raise_for_status()
        except httpx.HTTPStatusError as exc:
            raise ProviderRejected(
                f"BTCPay refused to show {what} ({response.status_code}): "
                f"{_error_message(response)}"
            ) from exc
        try:
            return response.json()
        except ValueError as exc:
            raise ProviderUnavailable(f"BTCPay returned invalid JSON for {what}") from exc

    async def create_invoice(self, payload: dict[str, Any]) -> Invoice:
        response = await self._request("POST", self._invoices_path(), json=payload)
        try:
            response.raise_for_status()
        except httpx.HTTPStatusError as exc:
            raise ProviderRejected(
                f"BTCPay refused the invoice ({response.status_code}): {_error_message(response)}"
            ) from exc
        try:
            return Invoice.model_validate(response.json())
        except (ValueError, ValidationError) as exc:
            raise ProviderRejected("BTCPay returned an unreadable invoice") from exc

    async def invoices_for_order(self, order_id: str) -> list[Invoice]:
        """`GET .../invoices?orderId=` (BTCPay indexes `metadata.orderId`, notes §2)."""
        found = await self._get_json(
            self._invoices_path(), "the invoice list", params={"orderId": order_id}
        )
        out = []
        for raw in found if isinstance(found, list) else []:
            try:
                out.append(Invoice.model_validate(raw))
            except ValidationError:
                continue
        return out

    async def fetch_invoice(self, invoice_id: str) -> Invoice | None:
        """The invoice as BTCPay knows it now; None if BTCPay does not know it (404)."""
        data = await self._get_json(self._invoices_path(invoice_id), f"invoice {invoice_id}")
        if data is None:
            return None
        try:
            return Invoice.model_validate(data)
        except ValidationError as exc:
            # BTCPay's own answer, not the sender's: let the provider retry.
            raise ProviderUnavailable("BTCPay returned an unreadable invoice") from exc

    async def settled_minor(self, invoice: Invoice) -> int:
        """What the invoice's `Settled` payments are worth, in minor units of its currency."""
        path = self._invoices_path(invoice.id, "/payment-methods")
        data = await self._get_json(path, f"the payments of invoice {invoice.id}")
        try:
            methods = [PaymentMethod.model_validate(item) for item in data or []]
        except (ValidationError, TypeError) as exc:
            raise ProviderUnavailable("BTCPay returned unreadable payment methods") from exc
        return nearest_minor(settled_value(methods), invoice.currency)
