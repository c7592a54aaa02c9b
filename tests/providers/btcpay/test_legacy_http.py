"""Legacy (btcpay-python pairing) mode through HTTP: the gateway app, its database (SQLite
and PostgreSQL), the real `btcpay-python` client and the fake BTCPay on 127.0.0.1.

Legacy IPNs are unsigned: anyone can POST `{"id": "<invoice>"}`. These tests pin what such
a POST can and cannot do (issue 8 item 2; issue 9 items 3, 7, 13).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from starlette.applications import Starlette

from config.catalog import Catalog
from config.settings import Settings
from gateway.app import create_app
from gateway.db.models import License, LicenseStatus, Order, OrderStatus
from gateway.payments.reconciler import Reconciler
from gateway.state import AppState
from providers.btcpay.legacy import BTCPayLegacyProvider
from sandbox.btcpay.harness import BTCPayLegacyHarness
from sandbox.btcpay.server import FakeBTCPay
from tests.support.app import running


class LegacyShop:
    def __init__(
        self,
        harness: BTCPayLegacyHarness,
        provider: BTCPayLegacyProvider,
        client: httpx.AsyncClient,
        app: Starlette,
    ) -> None:
        self.harness = harness
        self.fake: FakeBTCPay = harness.fake
        self.provider = provider
        self.client = client
        self.app = app

    async def reconcile(self) -> None:
        """One reconciler pass now, over every order (as if all were old enough and due)."""
        await Order.all().update(created_at=datetime.now(UTC) - timedelta(hours=1), recheck_at=None)
        state: AppState = self.app.state.gateway
        await Reconciler(state.settings, state.providers, state.applier).run_once()

    async def buy(self) -> tuple[str, str]:
        resp = await self.client.post("/checkout/btcpay/pro", json={"email": "buyer@example.com"})
        assert resp.status_code == 201, resp.text
        order = await Order.get(id=resp.json()["order_id"])
        assert order.provider_ref is not None
        return order.id, order.provider_ref

    async def ipn(self, body: bytes) -> httpx.Response:
        return await self.client.post(
            "/webhooks/btcpay", content=body, headers={"content-type": "application/json"}
        )

    def gets(self) -> int:
        return sum(1 for method, _, _ in self.fake.received if method == "GET")


@pytest.fixture
async def shop(
    db_url: str, settings_factory: Callable[..., Settings], catalog: Catalog
) -> AsyncIterator[LegacyShop]:
    harness = BTCPayLegacyHarness()
    try:
        provider = await harness.build_provider()
        app = create_app(
            settings_factory(database_url=db_url),
            catalog=catalog,
            providers={provider.name: provider},
            run_migrations=False,
        )
        async with running(app) as client:
            yield LegacyShop(harness, provider, client, app)
    finally:
        await harness.aclose()


async def test_late_payment_is_never_auto_settled_in_legacy_mode(shop: LegacyShop) -> None:
    # item 8.2: default late_payment=settle; the legacy API cannot show confirmations
    order_id, invoice_id = await shop.buy()
    shop.fake.expire(invoice_id)
    assert (await shop.ipn(shop.fake.legacy_ipn(invoice_id))).status_code == 200
    # given a full but unconfirmed payment after expiry, and anyone's unsigned IPN for it
    shop.fake.pay_late_unconfirmed(invoice_id)
    answer = await shop.ipn(json.dumps({"id": invoice_id}).encode())
    # then the order waits for a human, and no license exists
    assert answer.status_code == 200, answer.text
    order = await Order.get(id=order_id)
    assert order.status == OrderStatus.NEEDS_REVIEW
    assert await License.filter(order_id=order_id).count() == 0


async def test_late_payment_without_any_ipn_is_found_by_the_reconciler_for_review(
    shop: LegacyShop,
) -> None:
    # item 8.12: BTCPay sends no IPN for a payment after expiry, so only a re-check sees it
    order_id, invoice_id = await shop.buy()
    shop.fake.expire(invoice_id)
    await shop.ipn(shop.fake.legacy_ipn(invoice_id))
    assert (await Order.get(id=order_id)).status == OrderStatus.FAILED
    shop.fake.pay_after_expiry(invoice_id)
    # when the reconciler passes, the order waits for a human, visibly, with no license
    await shop.reconcile()
    order = await Order.get(id=order_id)
    assert order.status == OrderStatus.NEEDS_REVIEW
    answer = await shop.client.get(f"/orders/{order_id}", params={"token": order.status_token})
    assert answer.json()["status"] == "needs_review"
    assert await License.filter(order_id=order_id).count() == 0
    # and when the seller marks it complete after checking (its IPN lost), a pass settles it
    shop.fake.mark_settled(invoice_id)
    await shop.reconcile()
    await shop.reconcile()
    assert (await Order.get(id=order_id)).status == OrderStatus.SETTLED
    assert await License.filter(order_id=order_id).count() == 1


async def test_late_payment_in_review_marked_invalid_by_the_seller_ends_failed(
    shop: LegacyShop,
) -> None:
    order_id, invoice_id = await shop.buy()
    shop.fake.expire(invoice_id)
    shop.fake.pay_after_expiry(invoice_id)
    await shop.reconcile()
    assert (await Order.get(id=order_id)).status == OrderStatus.NEEDS_REVIEW
    # when the seller marks it invalid in BTCPay (a markedInvalid IPN follows)
    shop.fake.mark_invalid(invoice_id)
    answer = await shop.ipn(shop.fake.legacy_ipn(invoice_id))
    assert answer.status_code == 200, answer.text
    assert (await Order.get(id=order_id)).status == OrderStatus.FAILED
    assert await License.filter(order_id=order_id).count() == 0


async def test_ipns_for_invoices_we_never_created_cost_no_btcpay_call(shop: LegacyShop) -> None:
    # item 9.13: each forged IPN used to cost a signed GET in a shared thread pool
    await shop.buy()
    before = shop.gets()
    forged = [json.dumps({"id": f"Forged{n:016d}"}).encode() for n in range(30)]
    answers = await asyncio.gather(*(shop.ipn(body) for body in forged))
    assert {a.status_code for a in answers} == {200}
    assert {a.json()["events"][0]["result"] for a in answers} == {"ignored"}
    assert shop.gets() == before


async def test_concurrent_ipns_for_one_invoice_share_one_btcpay_call(shop: LegacyShop) -> None:
    # item 9.13: re-fetches of one invoice coalesce
    _, invoice_id = await shop.buy()
    shop.fake.pay_in_full(invoice_id)
    shop.fake.delay_seconds = 0.3
    before = shop.gets()
    body = json.dumps({"id": invoice_id}).encode()
    answers = await asyncio.gather(*(shop.ipn(body) for _ in range(20)))
    assert {a.status_code for a in answers} == {200}
    assert shop.gets() - before < 5


async def test_marked_invalid_after_settlement_revokes_the_license(shop: LegacyShop) -> None:
    # item 8.8, legacy: BTCPay sends the markedInvalid IPN (full notifications)
    order_id, invoice_id = await shop.buy()
    shop.fake.pay_in_full(invoice_id)
    await shop.ipn(shop.fake.legacy_ipn(invoice_id, status="confirmed"))
    assert (await Order.get(id=order_id)).status == OrderStatus.SETTLED
    shop.fake.mark_invalid(invoice_id)
    answer = await shop.ipn(shop.fake.legacy_ipn(invoice_id))
    assert answer.status_code == 200, answer.text
    assert (await Order.get(id=order_id)).status == OrderStatus.REVERSED
    [license_] = await License.filter(order_id=order_id)
    assert license_.status == LicenseStatus.REVOKED


async def test_unpaid_invoice_marked_invalid_fails_the_order_and_is_not_a_reversal(
    shop: LegacyShop,
) -> None:
    order_id, invoice_id = await shop.buy()
    shop.fake.mark_invalid(invoice_id)
    answer = await shop.ipn(shop.fake.legacy_ipn(invoice_id))
    assert [e["result"] for e in answer.json()["events"]] == ["applied", "noop"]
    assert (await Order.get(id=order_id)).status == OrderStatus.FAILED
    assert await License.filter(order_id=order_id).count() == 0


async def test_slow_legacy_calls_do_not_starve_the_shared_thread_pool(shop: LegacyShop) -> None:
    # item 9.13: btcpay-python calls run in the provider's own bounded pool
    invoices = [(await shop.buy())[1] for _ in range(12)]
    shop.fake.delay_seconds = 1.0
    slow = asyncio.gather(*(shop.provider.fetch_status(i) for i in invoices))
    await asyncio.sleep(0.1)
    started = asyncio.get_running_loop().time()
    await asyncio.to_thread(int)  # any other blocking work in the process
    waited = asyncio.get_running_loop().time() - started
    await slow
    assert waited < 0.5


async def test_merchant_token_never_reaches_the_answer_or_the_log(
    shop: LegacyShop, caplog: pytest.LogCaptureFixture
) -> None:
    # item 9.7: requests puts the signed URL, ?token=<merchant token>, in its error text
    _, invoice_id = await shop.buy()
    [token] = shop.fake.legacy_tokens
    shop.fake.legacy_tokens.clear()  # BTCPay now refuses the token: 401
    with caplog.at_level(logging.DEBUG):
        answer = await shop.ipn(json.dumps({"id": invoice_id}).encode())
    assert answer.status_code == 502
    assert token not in answer.text
    assert token not in caplog.text
    assert "token=***" in caplog.text


@pytest.mark.parametrize(
    "body",
    [b"[" * 100_000 + b"]" * 100_000, b'{"id": ' * 20_000 + b"1" + b"}" * 20_000, b"\xff\xfe"],
    ids=["deep-list", "deep-object", "not-utf8"],
)
async def test_odd_ipn_bodies_are_4xx(shop: LegacyShop, body: bytes) -> None:
    # item 9.3: RecursionError is not a ValueError
    answer = await shop.ipn(body)
    assert answer.status_code == 400, answer.text


def test_startup_log_says_legacy_late_payments_go_to_review(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def build() -> None:
        harness = BTCPayLegacyHarness()
        try:
            with caplog.at_level(logging.INFO, logger="providers.btcpay.legacy"):
                await harness.build_provider()
        finally:
            await harness.aclose()

    asyncio.run(build())
    assert "NEVER settled automatically" in caplog.text
