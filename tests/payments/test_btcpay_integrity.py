"""BTCPay payment integrity through HTTP: the gateway app, its database (SQLite and
PostgreSQL) and the fake BTCPay sending what real BTCPay sends, in its order (issue 8).

Each test says which issue item it pins; each failed on the code before the fix.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, ClassVar

import httpx
import pytest
from starlette.applications import Starlette

from config.catalog import Catalog
from config.settings import Settings
from gateway.app import create_app
from gateway.db.models import License, LicenseStatus, Order, OrderStatus
from gateway.payments.reconciler import PassReport, Reconciler
from gateway.state import AppState
from providers.btcpay.greenfield import BTCPayProvider
from sandbox.btcpay.harness import BTCPayGreenfieldHarness
from sandbox.btcpay.payloads import Delivery
from sandbox.btcpay.server import FakeBTCPay
from tests.support.app import running


class Shop:
    """The gateway app with the Greenfield provider, and the fake BTCPay behind it."""

    def __init__(
        self, harness: BTCPayGreenfieldHarness, client: httpx.AsyncClient, app: Starlette
    ) -> None:
        self.harness = harness
        self.fake: FakeBTCPay = harness.fake
        self.client = client
        self.app = app

    async def reconcile(self, age: timedelta = timedelta(hours=1)) -> PassReport:
        """One reconciler pass now, over every order (as if all were `age` old and due)."""
        await Order.all().update(created_at=datetime.now(UTC) - age, recheck_at=None)
        state: AppState = self.app.state.gateway
        return await Reconciler(state.settings, state.providers, state.applier).run_once()

    async def buy(self, product: str = "pro", **headers: str) -> tuple[str, str]:
        resp = await self.client.post(
            f"/checkout/btcpay/{product}", json={"email": "buyer@example.com"}, headers=headers
        )
        assert resp.status_code in (200, 201), resp.text
        order_id = resp.json()["order_id"]
        invoice_id = (await Order.get(id=order_id)).provider_ref
        assert invoice_id is not None
        return order_id, invoice_id

    async def deliver(self, deliveries: list[Delivery]) -> list[httpx.Response]:
        out = []
        for delivery in deliveries:
            resp = await self.client.post(
                "/webhooks/btcpay", content=delivery.body, headers=delivery.headers
            )
            assert resp.status_code < 500, (delivery.event_type, resp.text)
            out.append(resp)
        return out

    async def signed(self, payload: Any) -> httpx.Response:
        body = json.dumps(payload, indent=2).encode()
        headers = {"btcpay-sig": _sign(self.fake, body), "content-type": "application/json"}
        return await self.client.post("/webhooks/btcpay", content=body, headers=headers)


def _sign(fake: FakeBTCPay, body: bytes) -> str:
    from providers.btcpay.greenfield import sign_body

    return sign_body(fake.webhook_secret, body)


async def _order(order_id: str) -> Order:
    return await Order.get(id=order_id)


async def _licenses(order_id: str) -> list[License]:
    return await License.filter(order_id=order_id).all()


@pytest.fixture
def open_shop(
    db_url: str, settings_factory: Callable[..., Settings], catalog: Catalog
) -> Callable[..., contextlib.AbstractAsyncContextManager[Shop]]:
    @contextlib.asynccontextmanager
    async def make(
        late_payment: str = "settle",
        transport: Callable[[FakeBTCPay], httpx.AsyncBaseTransport] | None = None,
    ) -> AsyncIterator[Shop]:
        harness = BTCPayGreenfieldHarness(late_payment=late_payment)
        try:
            own = transport(harness.fake) if transport else harness.transport()
            provider = BTCPayProvider(harness.settings(), transport=own)
            app = create_app(
                settings_factory(database_url=db_url),
                catalog=catalog,
                providers={provider.name: provider},
                run_migrations=False,
            )
            async with running(app) as client:
                yield Shop(harness, client, app)
        finally:
            await harness.aclose()

    return make


# -- item 1: late payments settle on settled money only ------------------------------------


async def test_late_payment_settles_only_when_settled_payments_cover_the_price(
    open_shop: Callable[..., contextlib.AbstractAsyncContextManager[Shop]],
) -> None:
    async with open_shop() as shop:
        order_id, invoice_id = await shop.buy()
        # given the invoice expired, then a 1% payment confirmed and a 99% one did not
        await shop.deliver(shop.fake.expire(invoice_id))
        await shop.deliver(shop.fake.pay_after_expiry(invoice_id, Decimal("0.10")))
        answers = await shop.deliver(shop.fake.pay_late_unconfirmed(invoice_id))
        assert shop.fake.invoices[invoice_id].additional_status == "PaidLate"
        # then BTCPay's PaidLate (which counts unconfirmed money) issues nothing
        assert (await _order(order_id)).status == OrderStatus.FAILED
        assert await _licenses(order_id) == []
        assert all(a.status_code == 200 for a in answers)
        # when the big payment confirms, its InvoicePaymentSettled settles, once
        confirmed = shop.fake.confirm(invoice_id)
        await shop.deliver([*confirmed, shop.fake.redeliver(confirmed[-1])])
        order = await _order(order_id)
        assert order.status == OrderStatus.SETTLED
        assert order.payment_ref == invoice_id
        assert len(await _licenses(order_id)) == 1


async def test_late_payment_under_policy_review_needs_review_not_failed(
    open_shop: Callable[..., contextlib.AbstractAsyncContextManager[Shop]],
) -> None:
    # item 10 (provider side): the payment must be visible as needing a human
    async with open_shop(late_payment="review") as shop:
        order_id, invoice_id = await shop.buy()
        await shop.deliver(shop.fake.pay_after_expiry(invoice_id))
        order = await _order(order_id)
        assert order.status == OrderStatus.NEEDS_REVIEW
        assert await _licenses(order_id) == []


# -- item 3: what was paid, not the price --------------------------------------------------


async def test_invoice_settled_within_a_tolerance_issues_no_license(
    open_shop: Callable[..., contextlib.AbstractAsyncContextManager[Shop]],
) -> None:
    async with open_shop() as shop:
        shop.fake.store_payment_tolerance = 10.0
        order_id, invoice_id = await shop.buy()
        invoice = shop.fake.invoices[invoice_id]
        # our invoices carry no tolerance, whatever the store's default
        assert invoice.checkout["paymentTolerance"] == 0
        short = shop.fake.pay(invoice_id, Decimal("8.99"))
        assert [d.event_type for d in short] == ["InvoiceReceivedPayment"]
        await shop.deliver(short)
        assert (await _order(order_id)).paid_minor == 899
        # given an invoice that did carry 10% (made before the fix): BTCPay settles 9.00
        other_id, other_invoice = await shop.buy("pro", **{"Idempotency-Key": "k2"})
        shop.fake.invoices[other_invoice].checkout["paymentTolerance"] = 10
        await shop.deliver(shop.fake.pay(other_invoice, Decimal("9.00")))
        await shop.deliver(shop.fake.confirm(other_invoice))
        assert shop.fake.invoices[other_invoice].status == "Settled"
        # then the gateway compares what was paid with the order and issues nothing
        assert (await _order(other_id)).status != OrderStatus.SETTLED
        assert await _licenses(other_id) == []


# -- item 5 (BTCPay part): one invoice per order ---------------------------------------------


class _LoseFirstCreateAnswer(httpx.AsyncBaseTransport):
    """BTCPay creates the invoice, but its answer never reaches the gateway."""

    def __init__(self, fake: FakeBTCPay) -> None:
        self._inner = httpx.ASGITransport(app=fake.app)
        self.lost = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self._inner.handle_async_request(request)
        if request.method == "POST" and not self.lost:
            self.lost += 1
            raise httpx.ReadTimeout("answer lost", request=request)
        return response


async def test_retry_after_a_lost_create_answer_reuses_the_btcpay_invoice(
    open_shop: Callable[..., contextlib.AbstractAsyncContextManager[Shop]],
) -> None:
    async with open_shop(transport=_LoseFirstCreateAnswer) as shop:
        headers = {"Idempotency-Key": "retry-me"}
        first = await shop.client.post(
            "/checkout/btcpay/pro", json={"email": "buyer@example.com"}, headers=headers
        )
        assert first.status_code == 503
        assert len(shop.fake.invoices) == 1
        # when the buyer retries with the same key
        order_id, invoice_id = await shop.buy("pro", **headers)
        # then BTCPay still has one invoice, the one the order points at
        assert list(shop.fake.invoices) == [invoice_id]
        assert shop.fake.invoices[invoice_id].metadata["orderId"] == order_id
        await shop.deliver(shop.fake.pay_in_full(invoice_id))
        assert len(await _licenses(order_id)) == 1


# -- item 8: refunds and withdrawn settlements revoke --------------------------------------


@pytest.mark.parametrize("withdraw", [FakeBTCPay.refund, FakeBTCPay.mark_invalid])
async def test_refund_or_marked_invalid_after_settlement_revokes_the_license(
    open_shop: Callable[..., contextlib.AbstractAsyncContextManager[Shop]],
    withdraw: Callable[[FakeBTCPay, str], list[Delivery]],
) -> None:
    async with open_shop() as shop:
        order_id, invoice_id = await shop.buy()
        await shop.deliver(shop.fake.pay_in_full(invoice_id))
        [license_] = await _licenses(order_id)
        assert license_.status == LicenseStatus.ACTIVE
        await shop.deliver(withdraw(shop.fake, invoice_id))
        assert (await _order(order_id)).status == OrderStatus.REVERSED
        [license_] = await _licenses(order_id)
        assert license_.status == LicenseStatus.REVOKED


async def test_unpaid_invoice_marked_invalid_fails_the_order_and_is_not_a_reversal(
    open_shop: Callable[..., contextlib.AbstractAsyncContextManager[Shop]],
) -> None:
    async with open_shop() as shop:
        order_id, invoice_id = await shop.buy()
        # when the seller marks the unpaid invoice invalid (BTCPay sends one InvoiceInvalid,
        # which stands for a failure and, on a settled invoice, a withdrawn settlement)
        [answer] = await shop.deliver(shop.fake.mark_invalid(invoice_id))
        # then the order failed: nothing was settled, so nothing was reversed
        assert [e["result"] for e in answer.json()["events"]] == ["applied", "noop"]
        order = await _order(order_id)
        assert order.status == OrderStatus.FAILED
        assert await _licenses(order_id) == []
        # and a later settlement of the marked invoice cannot find it reversed either
        await shop.deliver(shop.fake.mark_settled(invoice_id))
        assert (await _order(order_id)).status == OrderStatus.SETTLED
        assert len(await _licenses(order_id)) == 1


@pytest.mark.parametrize("withdraw", [FakeBTCPay.refund, FakeBTCPay.mark_invalid])
async def test_late_payment_issued_after_review_is_still_revoked_by_a_refund(
    open_shop: Callable[..., contextlib.AbstractAsyncContextManager[Shop]],
    withdraw: Callable[[FakeBTCPay, str], list[Delivery]],
) -> None:
    async with open_shop(late_payment="review") as shop:
        order_id, invoice_id = await shop.buy()
        await shop.deliver(shop.fake.expire(invoice_id))
        await shop.deliver(shop.fake.pay_after_expiry(invoice_id))
        assert (await _order(order_id)).status == OrderStatus.NEEDS_REVIEW
        # given the operator issued the license after checking the late payment
        state: AppState = shop.app.state.gateway
        assert (await state.applier.resolve_review(order_id, issue=True)).license_issued
        # when the seller then refunds the invoice (or withdraws it by marking it invalid)
        [answer] = await shop.deliver(withdraw(shop.fake, invoice_id))
        # then the reversal names the payment the license was issued for, and revokes it
        assert "parked" not in [e["result"] for e in answer.json()["events"]]
        assert (await _order(order_id)).status == OrderStatus.REVERSED
        [license_] = await _licenses(order_id)
        assert license_.status == LicenseStatus.REVOKED


@pytest.mark.parametrize("lost_webhook", [False, True], ids=["webhook", "reconciler"])
async def test_needs_review_order_marked_invalid_by_the_seller_ends_failed(
    open_shop: Callable[..., contextlib.AbstractAsyncContextManager[Shop]], lost_webhook: bool
) -> None:
    async with open_shop(late_payment="review") as shop:
        order_id, invoice_id = await shop.buy()
        await shop.deliver(shop.fake.expire(invoice_id))
        await shop.deliver(shop.fake.pay_after_expiry(invoice_id))
        assert (await _order(order_id)).status == OrderStatus.NEEDS_REVIEW
        # when the seller checks the late payment and says no by marking the invoice invalid
        marked = shop.fake.mark_invalid(invoice_id)
        if lost_webhook:
            await shop.reconcile()
        else:
            await shop.deliver(marked)
        # then that decision ends the review: failed, with the reason, and nothing issued
        order = await _order(order_id)
        assert order.status == OrderStatus.FAILED
        assert "manually marked invalid" in order.notes
        assert await _licenses(order_id) == []


# -- item 11: the instant late payment race -------------------------------------------------


async def test_instant_late_payment_seen_before_paid_late_still_settles(
    open_shop: Callable[..., contextlib.AbstractAsyncContextManager[Shop]],
) -> None:
    async with open_shop() as shop:
        order_id, invoice_id = await shop.buy()
        await shop.deliver(shop.fake.expire(invoice_id))
        inv = shop.fake.invoices[invoice_id]
        received, payment_settled, paid_late = shop.fake.pay_late_instant(invoice_id)
        # given our re-fetch of InvoicePaymentSettled ran before BTCPay set PaidLate
        inv.additional_status = "None"
        [early] = (await shop.deliver([received, payment_settled]))[1:]
        inv.additional_status = "PaidLate"
        assert early.json()["events"][0]["result"] == "ignored"
        # when InvoicePaidAfterExpiration follows, the order settles
        await shop.deliver([paid_late])
        assert (await _order(order_id)).status == OrderStatus.SETTLED
        assert len(await _licenses(order_id)) == 1


# -- items 7, 10, 11 through the reconciler: the BTCPay answers it must act on ------------


async def test_reconciler_settles_a_late_payment_once_its_payments_settle_never_before(
    open_shop: Callable[..., contextlib.AbstractAsyncContextManager[Shop]],
) -> None:
    async with open_shop() as shop:
        order_id, invoice_id = await shop.buy()
        await shop.deliver(shop.fake.expire(invoice_id))
        # given a full late payment, still unconfirmed, whose webhooks were all lost
        shop.fake.pay_late_unconfirmed(invoice_id)
        # when the reconciler asks BTCPay: PaidLate counts unconfirmed money, so it waits
        await shop.reconcile()
        order = await _order(order_id)
        assert order.status == OrderStatus.FAILED
        assert order.recheck_at is not None
        assert await _licenses(order_id) == []
        # then once the payment confirms (its webhooks lost too), the next pass settles
        shop.fake.confirm(invoice_id)
        report = await shop.reconcile()
        assert report.changed == [order_id]
        assert (await _order(order_id)).status == OrderStatus.SETTLED
        # and a pass after that, or the webhook arriving after all, issues nothing more
        await shop.reconcile()
        await shop.deliver(shop.fake.confirm(invoice_id))
        assert len(await _licenses(order_id)) == 1


async def test_reconciler_never_fails_an_order_past_the_horizon_while_its_payment_confirms(
    open_shop: Callable[..., contextlib.AbstractAsyncContextManager[Shop]],
) -> None:
    async with open_shop() as shop:
        order_id, invoice_id = await shop.buy()
        # given a full payment BTCPay still counts as unconfirmed (a low-fee transaction),
        # whose webhooks were lost, on an order older than the reconcile horizon
        shop.fake.receive_full_payment(invoice_id)
        state: AppState = shop.app.state.gateway
        old = timedelta(hours=state.settings.reconcile.horizon_hours + 1)
        # when the reconciler passes, then the paid order is not failed for its age
        report = await shop.reconcile(age=old)
        assert report.expired == []
        assert (await _order(order_id)).status == OrderStatus.PENDING
        # and once the payment confirms (that webhook lost too), a pass settles it
        shop.fake.confirm(invoice_id)
        await shop.reconcile(age=old)
        assert (await _order(order_id)).status == OrderStatus.SETTLED
        assert len(await _licenses(order_id)) == 1


async def test_reconciler_finds_the_seller_marking_a_needs_review_order_settled(
    open_shop: Callable[..., contextlib.AbstractAsyncContextManager[Shop]],
) -> None:
    async with open_shop(late_payment="review") as shop:
        order_id, invoice_id = await shop.buy()
        await shop.deliver(shop.fake.expire(invoice_id))
        await shop.deliver(shop.fake.pay_after_expiry(invoice_id, confirmed=False))
        order = await _order(order_id)
        assert order.status == OrderStatus.NEEDS_REVIEW
        # and the reviewer is told what BTCPay counts as paid (README, Late payments)
        assert order.paid_minor == order.amount_minor
        assert order.review_reason is not None
        assert order.review_reason.endswith("; btcpay counts 9.99 USD paid")
        # the payment confirming is not the seller's decision: still for review
        await shop.deliver(shop.fake.confirm(invoice_id))
        await shop.reconcile()
        assert (await _order(order_id)).status == OrderStatus.NEEDS_REVIEW
        assert await _licenses(order_id) == []
        # given the seller checked the payment and marked the invoice settled in BTCPay,
        # and that webhook was lost
        shop.fake.mark_settled(invoice_id)
        # when the reconciler passes, then the order settles with one license
        await shop.reconcile()
        assert (await _order(order_id)).status == OrderStatus.SETTLED
        await shop.reconcile()
        assert len(await _licenses(order_id)) == 1


# -- issue 9 items 2, 14, 15: foreign and odd but signed payloads ----------------------------


@pytest.mark.parametrize(
    ("amount", "currency", "metadata"),
    [
        ("9.99", "USD", {"orderId": "woocommerce-" + "9" * 60}),
        ("0.0002", "BTC", {"orderId": "1042"}),
        ("9.99", "USD", {}),
    ],
    ids=["long-order-id", "btc-priced", "no-order-id"],
)
async def test_invoice_of_another_app_in_the_same_store_is_ignored(
    open_shop: Callable[..., contextlib.AbstractAsyncContextManager[Shop]],
    amount: str,
    currency: str,
    metadata: dict[str, str],
) -> None:
    # issue 9 item 2: another app's orderId must not reach our orders table
    async with open_shop() as shop:
        invoice, _ = shop.fake.create_invoice(amount=amount, currency=currency, metadata=metadata)
        resp = await shop.deliver(shop.fake.pay_in_full(invoice.id))
        assert [r.status_code for r in resp] == [200] * len(resp)
        assert {r.json()["events"][0]["result"] for r in resp} == {"ignored"}


@pytest.mark.parametrize(
    "payload",
    [
        {"type": "InvoiceSettled", "invoiceId": "abc\u0000\r\ndef"},
        {"type": "InvoiceSettled", "invoiceId": "%2e%2e%2f%2e%2e%2fapi%2fv1%2fstores"},
        {"type": "InvoiceSettled", "invoiceId": "../../api/v1/stores"},
        {"type": "InvoiceSettled", "invoiceId": "x" * 5000},
    ],
    ids=["control-chars", "encoded-dots", "dots", "huge"],
)
async def test_odd_invoice_ids_are_ignored_without_a_btcpay_call(
    open_shop: Callable[..., contextlib.AbstractAsyncContextManager[Shop]], payload: Any
) -> None:
    async with open_shop(transport=_Recording) as shop:
        resp = await shop.signed(payload)
        assert resp.status_code in (200, 400), resp.text
        assert _Recording.paths == []


class _Recording(httpx.AsyncBaseTransport):
    """Every URL path the provider asks BTCPay for, whichever route it would reach."""

    paths: ClassVar[list[str]] = []

    def __init__(self, fake: FakeBTCPay) -> None:
        self._inner = httpx.ASGITransport(app=fake.app)
        _Recording.paths = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        _Recording.paths.append(request.url.raw_path.decode())
        return await self._inner.handle_async_request(request)


@pytest.mark.parametrize(
    "payload",
    [
        {"type": ["InvoiceSettled"], "invoiceId": "abc"},
        {"type": "InvoiceReceivedPayment", "invoiceId": "abc", "payment": []},
        {"type": "InvoiceSettled", "invoiceId": {"id": "abc"}},
        {"type": "InvoiceSettled", "invoiceId": 12},
        "just a string",
    ],
    ids=["type-list", "payment-list", "id-object", "id-number", "string"],
)
async def test_signed_payloads_of_the_wrong_shape_are_4xx(
    open_shop: Callable[..., contextlib.AbstractAsyncContextManager[Shop]], payload: Any
) -> None:
    async with open_shop() as shop:
        resp = await shop.signed(payload)
        assert resp.status_code == 400, resp.text
        assert resp.json()["error"] == "bad_payload"


@pytest.mark.parametrize(
    ("event_type", "field"),
    [("InvoiceRefund", "pullPaymentId"), ("InvoiceReceivedPayment", "payment")],
)
async def test_signed_event_ids_with_a_nul_byte_are_4xx_not_a_database_error(
    open_shop: Callable[..., contextlib.AbstractAsyncContextManager[Shop]],
    event_type: str,
    field: str,
) -> None:
    # Both ids become part of the inbox's dedupe key: PostgreSQL refuses NUL in text, and
    # the 503 that followed made BTCPay redeliver it for days (issue 9 items 14 and 17).
    async with open_shop() as shop:
        _, invoice_id = await shop.buy()
        shop.fake.receive_full_payment(invoice_id)
        value: Any = "pp_\x00x" if field == "pullPaymentId" else {"id": "tx\x00-0"}
        payload = {"type": event_type, "invoiceId": invoice_id, field: value}
        resp = await shop.signed(payload)
        assert resp.status_code == 400, resp.text
        assert resp.json()["error"] == "bad_payload"


async def test_deeply_nested_signed_payload_is_4xx(
    open_shop: Callable[..., contextlib.AbstractAsyncContextManager[Shop]],
) -> None:
    async with open_shop() as shop:
        body = b'{"type": "InvoiceSettled", "invoiceId": "abc", "metadata": ' + b"[" * 50_000
        body += b"]" * 50_000 + b"}"
        headers = {"btcpay-sig": _sign(shop.fake, body)}
        resp = await shop.client.post("/webhooks/btcpay", content=body, headers=headers)
        assert resp.status_code == 400
