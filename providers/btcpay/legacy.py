"""BTCPay Server, legacy BitPay-compatible API through `btcpay-python` (pairing mode).

`btcpay-python` is synchronous `requests`, so every call runs in a worker thread and
never on the event loop; its sessions get a timeout it does not set itself. Legacy IPNs
are unsigned (BTCPay: "can be faked"), so an IPN body is only a hint naming an invoice:
the invoice is re-fetched with the signed client and only the fetched status counts.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import requests
from pydantic import ValidationError

from config.money import format_decimal
from config.settings import BtcpaySettings, SettingsError, env_name
from providers.base import CheckoutRequest, CheckoutSession
from providers.btcpay.legacy_client import LegacyPairing as LegacyPairing
from providers.btcpay.legacy_client import PairingError as PairingError
from providers.btcpay.legacy_client import make_client, scrub_urllib3_logs, translate
from providers.btcpay.legacy_client import pair_legacy as pair_legacy
from providers.btcpay.legacy_client import scrub as scrub
from providers.btcpay.legacy_invoices import decide, ipn_events
from providers.btcpay.shapes import LegacyIpn, is_invoice_id
from providers.errors import ProviderRejected, ProviderUnavailable, WebhookPayloadError
from providers.events import Ignored, PaymentEvent, ProviderName

log = logging.getLogger(__name__)

T = TypeVar("T")
# Threads for btcpay-python's blocking calls, per provider.
_LEGACY_THREADS = 4


def _invoice_id_of(body: bytes) -> str | None:
    """The invoice id an IPN names, if it has the shape of one (unverified: IPNs are
    unsigned). Any body that is not such an IPN (not JSON, nested too deep, wrong types)
    names none."""
    try:
        invoice_id = LegacyIpn.model_validate_json(body).invoice_id
    except ValidationError:
        return None
    return invoice_id if is_invoice_id(invoice_id) else None


class BTCPayLegacyProvider:
    name = ProviderName.BTCPAY

    def __init__(self, settings: BtcpaySettings, *, data_dir: Path) -> None:
        if not settings.url:
            raise SettingsError(f"BTCPay legacy mode needs {env_name('btcpay', 'url')}")
        key_file, token_file = settings.legacy_paths(data_dir)
        try:
            pem = key_file.read_text(encoding="utf-8")
            tokens = json.loads(token_file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise SettingsError(
                f"BTCPay legacy key/token unreadable ({key_file}, {token_file}): run "
                "`checkout-gateway btcpay pair`"
            ) from exc
        if not isinstance(tokens, dict) or "merchant" not in tokens:
            raise SettingsError(f"{token_file}: no merchant token; pair again")
        self._settings = settings
        self._token = str(tokens["merchant"])
        scrub_urllib3_logs()
        self._client = make_client(
            settings.url, pem, {"merchant": self._token}, settings.timeout_seconds
        )
        # Our own bounded pool: a flood of (unsigned) IPNs queues here instead of starving
        # the default executor every other blocking call in the process shares.
        self._executor = ThreadPoolExecutor(
            max_workers=_LEGACY_THREADS, thread_name_prefix="btcpay-legacy"
        )
        # One signed GET per invoice at a time; concurrent askers share its answer.
        self._fetching: dict[str, asyncio.Future[dict[str, Any] | None]] = {}
        log.info(
            "btcpay legacy mode: a payment after the invoice expired is NEVER settled "
            "automatically (the legacy API cannot show whether it confirmed); such orders "
            "go to review (late_payment=%s is not applied)",
            settings.late_payment,
        )

    async def _in_pool(self, func: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, func, *args)

    async def _call(self, what: str, func: Callable[..., T], *args: Any) -> T:
        try:
            return await self._in_pool(func, *args)
        except Exception as exc:
            raise translate(exc, what, self._token) from exc

    async def aclose(self) -> None:
        await self._in_pool(self._client.s.close)
        self._executor.shutdown(wait=False, cancel_futures=True)

    # `UnsignedNotifications`: IPNs are unsigned, so the gateway drops those naming an
    # invoice it never created before each costs a signed BTCPay call.
    def unverified_ref(self, body: bytes) -> str | None:
        return _invoice_id_of(body)

    async def create_checkout(self, req: CheckoutRequest) -> CheckoutSession:
        payload = {
            # A decimal string; btcpay-python only float()-checks it, never sends a float.
            "price": format_decimal(req.amount_minor, req.currency),
            "currency": req.currency.upper(),
            "orderId": req.order_id,
            "itemDesc": req.description or req.product_name,
            "itemCode": req.product_id,
            "notificationURL": req.notification_url,
            "redirectURL": req.success_url,
            "fullNotifications": True,
            "buyer": {"email": req.buyer_email},
        }
        # create_invoice adds the token to the dict it is given; keep ours clean.
        invoice = await self._call("invoice creation", self._client.create_invoice, dict(payload))
        try:
            expires = invoice.get("expirationTime")
            session = CheckoutSession(
                provider_ref=str(invoice["id"]),
                checkout_url=str(invoice["url"]),
                expires_at=(
                    datetime.fromtimestamp(expires / 1000, UTC)
                    if isinstance(expires, int | float)
                    else None
                ),
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise ProviderRejected("BTCPay returned an unreadable legacy invoice") from exc
        log.info(
            "btcpay legacy invoice %s created for order %s", session.provider_ref, req.order_id
        )
        return session

    async def fetch_invoice(self, invoice_id: str) -> dict[str, Any] | None:
        if not is_invoice_id(invoice_id):
            raise WebhookPayloadError("not a BTCPay invoice id")
        pending = self._fetching.get(invoice_id)
        if pending is None:
            pending = asyncio.ensure_future(self._fetch_invoice(invoice_id))
            self._fetching[invoice_id] = pending
            pending.add_done_callback(lambda _: self._fetching.pop(invoice_id, None))
        # shield: one caller going away must not cancel the fetch the others wait on.
        return await asyncio.shield(pending)

    async def _fetch_invoice(self, invoice_id: str) -> dict[str, Any] | None:
        what = f"fetching invoice {invoice_id}"
        try:
            invoice = await self._in_pool(self._client.get_invoice, invoice_id)
        except requests.HTTPError as exc:
            if exc.response is not None and exc.response.status_code == 404:
                return None
            raise translate(exc, what, self._token) from exc
        except Exception as exc:
            raise translate(exc, what, self._token) from exc
        if not isinstance(invoice, dict):
            raise ProviderUnavailable("BTCPay returned a non-object legacy invoice")
        return invoice

    async def parse_webhook(self, body: bytes, headers: Mapping[str, str]) -> list[PaymentEvent]:
        # Unsigned by design: nothing in the body is trusted beyond the invoice id.
        invoice_id = _invoice_id_of(body)
        if invoice_id is None:
            raise WebhookPayloadError("BTCPay IPN names no invoice id")
        invoice = await self.fetch_invoice(invoice_id)
        if invoice is None:
            return [
                Ignored(
                    provider=self.name, reason="IPN for an unknown invoice", provider_ref=invoice_id
                )
            ]
        return ipn_events(invoice_id, invoice)

    async def fetch_status(self, provider_ref: str) -> PaymentEvent | None:
        if not is_invoice_id(provider_ref):
            return None
        invoice = await self.fetch_invoice(provider_ref)
        return None if invoice is None else decide(provider_ref, invoice)
