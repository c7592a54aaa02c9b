"""Harnesses for the provider contract suite (tests/providers/test_contract.py): the
Greenfield provider on an in-process fake BTCPay, and the legacy provider paired with a fake
served on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path
from typing import Any

import httpx

from config.money import format_decimal
from config.settings import BtcpaySettings
from providers.btcpay.greenfield import BTCPayProvider
from providers.btcpay.legacy import BTCPayLegacyProvider, pair_legacy
from sandbox.btcpay.payloads import Delivery
from sandbox.btcpay.server import FakeBTCPay, FakeServerThread


def _checkout_metadata(order_id: str) -> dict[str, Any]:
    return {
        "orderId": order_id,
        "buyerEmail": "buyer@example.com",
        "itemDesc": "Pro license (1 seat)",
        "itemCode": "pro",
    }


def _paid_invoice(
    fake: FakeBTCPay, order_id: str, amount_minor: int, currency: str
) -> tuple[str, list[Delivery]]:
    """An invoice for our order, paid in full and confirmed; its id and the deliveries."""
    invoice, _ = fake.create_invoice(
        amount=format_decimal(amount_minor, currency),
        currency=currency,
        metadata=_checkout_metadata(order_id),
    )
    return invoice.id, fake.pay_in_full(invoice.id)


class BTCPayGreenfieldHarness:
    """Greenfield provider wired to a fresh in-process fake over `httpx.ASGITransport`."""

    supports_signatures = True

    def __init__(self, *, late_payment: str = "settle") -> None:
        self.fake = FakeBTCPay(base_url="http://btcpay.test")
        self.late_payment = late_payment
        self._providers: list[BTCPayProvider] = []

    def settings(self) -> BtcpaySettings:
        return BtcpaySettings(
            enabled=True,
            url="http://btcpay.test",
            store_id=self.fake.store_id,
            api_key=self.fake.api_key,
            webhook_secret=self.fake.webhook_secret,
            late_payment=self.late_payment,
        )

    def transport(self) -> httpx.AsyncBaseTransport:
        return httpx.ASGITransport(app=self.fake.app)

    async def build_provider(self) -> BTCPayProvider:
        provider = BTCPayProvider(self.settings(), transport=self.transport())
        self._providers.append(provider)
        return provider

    async def signed_settle_webhook(
        self, order_id: str, amount_minor: int, currency: str
    ) -> tuple[bytes, dict[str, str]]:
        deliveries = _paid_invoice(self.fake, order_id, amount_minor, currency)[1]
        settled = [d for d in deliveries if d.event_type == "InvoiceSettled"]
        return settled[0].body, dict(settled[0].headers)

    def signed_unrelated_webhook(self) -> tuple[bytes, dict[str, str]]:
        _, deliveries = self.fake.create_invoice(
            amount="1.00", metadata=_checkout_metadata("unrelated")
        )
        return deliveries[0].body, dict(deliveries[0].headers)

    async def aclose(self) -> None:
        for provider in self._providers:
            await provider.aclose()


class BTCPayLegacyHarness:
    """Legacy provider paired (real `btcpay-python` over HTTP) with a fake on 127.0.0.1."""

    supports_signatures = False

    def __init__(self, *, late_payment: str = "settle", data_dir: Path | None = None) -> None:
        self.fake = FakeBTCPay()
        self.late_payment = late_payment
        self._own_dir = data_dir is None
        self.data_dir = data_dir or Path(tempfile.mkdtemp(prefix="btcpay-legacy-"))
        self._server: FakeServerThread | None = None
        self._providers: list[BTCPayLegacyProvider] = []

    def settings(self) -> BtcpaySettings:
        return BtcpaySettings(
            enabled=True,
            mode="legacy",
            url=self._url(),
            late_payment=self.late_payment,
        )

    def _url(self) -> str:
        if self._server is None:
            self._server = FakeServerThread(self.fake.app)
            self.fake.base_url = self._server.start()
        return self._server.url

    async def pair(self) -> None:
        key_file, token_file = self.settings().legacy_paths(self.data_dir)
        if not key_file.exists():
            code = self.fake.issue_pairing_code()
            await asyncio.to_thread(pair_legacy, self._url(), code, key_file, token_file)

    async def build_provider(self) -> BTCPayLegacyProvider:
        await self.pair()
        provider = BTCPayLegacyProvider(self.settings(), data_dir=self.data_dir)
        self._providers.append(provider)
        return provider

    async def signed_settle_webhook(
        self, order_id: str, amount_minor: int, currency: str
    ) -> tuple[bytes, dict[str, str]]:
        invoice_id = _paid_invoice(self.fake, order_id, amount_minor, currency)[0]
        body = self.fake.legacy_ipn(invoice_id, status="confirmed")
        return body, {"content-type": "application/json"}

    def signed_unrelated_webhook(self) -> tuple[bytes, dict[str, str]]:
        # An IPN for an unpaid invoice: the fetch says "new", so nothing to act on.
        invoice, _ = self.fake.create_invoice(
            amount="1.00", metadata=_checkout_metadata("unrelated")
        )
        return self.fake.legacy_ipn(invoice.id), {"content-type": "application/json"}

    async def aclose(self) -> None:
        for provider in self._providers:
            await provider.aclose()
        if self._server is not None:
            await asyncio.to_thread(self._server.stop)
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)
