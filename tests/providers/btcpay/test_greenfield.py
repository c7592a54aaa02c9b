"""BTCPay Greenfield provider against the stateful fake BTCPay (in-process, real HTTP shapes)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any

import httpx
import pytest

from config.catalog import Catalog
from config.settings import Settings
from gateway.app import create_app
from gateway.db.models import License, Order, OrderStatus
from providers.base import CheckoutRequest, PaymentProvider
from providers.btcpay.greenfield import BTCPayProvider, sign_body
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
    PaymentNeedsReview,
    PaymentPending,
    PaymentReversed,
    PaymentSettled,
    ProviderName,
)
from sandbox.btcpay.harness import BTCPayGreenfieldHarness
from sandbox.btcpay.payloads import Delivery, FakeInvoice
from tests.support.app import running


class Env:
    """One fake BTCPay and a provider wired to it."""

    def __init__(self, harness: BTCPayGreenfieldHarness, provider: BTCPayProvider) -> None:
        self.harness = harness
        self.fake = harness.fake
        self.provider = provider

    def invoice(
        self, amount: str = "9.99", currency: str = "USD", order: str = "ord_00000000000000000001"
    ) -> str:
        invoice, _ = self.fake.create_invoice(
            amount=amount, currency=currency, metadata={"orderId": order, "itemCode": "pro"}
        )
        return invoice.id

    async def parse(self, delivery: Delivery) -> PaymentEvent:
        [event] = await self.provider.parse_webhook(delivery.body, delivery.headers)
        return event

    async def parse_all(self, deliveries: list[Delivery]) -> dict[str, PaymentEvent]:
        return {d.event_type: await self.parse(d) for d in deliveries}

    def signed(self, payload: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
        body = json.dumps(payload, indent=2).encode()
        return body, {"btcpay-sig": sign_body(self.fake.webhook_secret, body)}


async def _env(late_payment: str = "settle") -> Env:
    harness = BTCPayGreenfieldHarness(late_payment=late_payment)
    return Env(harness, await harness.build_provider())


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    e = await _env()
    yield e
    await e.harness.aclose()


@pytest.fixture
async def review_env() -> AsyncIterator[Env]:
    e = await _env("review")
    yield e
    await e.harness.aclose()


def checkout_request(amount_minor: int = 999, currency: str = "USD") -> CheckoutRequest:
    return CheckoutRequest(
        order_id="ord_00000000000000000042",
        product_id="pro",
        product_name="Pro",
        description="Pro license (1 seat)",
        amount_minor=amount_minor,
        currency=currency,
        buyer_email="buyer@example.com",
        success_url="https://shop.example/orders/ord_00000000000000000042",
        cancel_url="https://shop.example/cancel",
        notification_url="https://shop.example/webhooks/btcpay",
        idempotency_key="ord_00000000000000000042",
    )


def _posts(env: Env) -> list[tuple[str, str, Any]]:
    return [r for r in env.fake.received if r[0] == "POST"]


def _of_type(deliveries: list[Delivery], event_type: str) -> Delivery:
    return next(d for d in deliveries if d.event_type == event_type)


# -- checkout ------------------------------------------------------------------------------


def test_provider_satisfies_the_protocol(env: Env) -> None:
    assert isinstance(env.provider, PaymentProvider)
    assert env.provider.name is ProviderName.BTCPAY


async def test_create_checkout_returns_invoice_id_and_checkout_link(env: Env) -> None:
    session = await env.provider.create_checkout(checkout_request())

    [(_, path, body)] = _posts(env)
    invoice = env.fake.invoices[session.provider_ref]
    assert path == f"/api/v1/stores/{env.fake.store_id}/invoices"
    assert session.checkout_url == f"http://btcpay.test/i/{invoice.id}"
    assert session.expires_at is not None
    assert session.expires_at.timestamp() == invoice.expiration
    assert body == {
        "amount": "9.99",
        "currency": "USD",
        "metadata": {
            "orderId": "ord_00000000000000000042",
            "buyerEmail": "buyer@example.com",
            "itemDesc": "Pro license (1 seat)",
            "itemCode": "pro",
        },
        "checkout": {
            "speedPolicy": "MediumSpeed",
            "expirationMinutes": 30,
            "paymentTolerance": 0,
            "redirectURL": "https://shop.example/orders/ord_00000000000000000042",
        },
    }


@pytest.mark.parametrize(
    ("amount_minor", "currency", "sent"),
    [(1500, "JPY", "1500"), (1234, "KWD", "1.234"), (100, "EUR", "1.00")],
)
async def test_create_checkout_sends_amount_as_decimal_string_in_currency_units(
    env: Env, amount_minor: int, currency: str, sent: str
) -> None:
    await env.provider.create_checkout(checkout_request(amount_minor, currency))
    [(_, _, body)] = _posts(env)
    assert (body["amount"], body["currency"]) == (sent, currency)


async def test_create_checkout_with_wrong_api_key_is_rejected(env: Env) -> None:
    env.fake.api_key = "rotated"
    with pytest.raises(ProviderRejected, match=r"401.*Authentication is required"):
        await env.provider.create_checkout(checkout_request())


@pytest.mark.parametrize("status", [500, 502, 503, 429])
async def test_create_checkout_on_server_trouble_is_unavailable(env: Env, status: int) -> None:
    env.fake.outage_status = status
    with pytest.raises(ProviderUnavailable):
        await env.provider.create_checkout(checkout_request())


def _provider_with(handler: Any) -> BTCPayProvider:
    harness = BTCPayGreenfieldHarness()
    return BTCPayProvider(harness.settings(), transport=httpx.MockTransport(handler))


async def test_create_checkout_validation_error_is_rejected_with_btcpay_message() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(422, json=[{"path": "amount", "message": "Amount too big"}])

    provider = _provider_with(handler)
    with pytest.raises(ProviderRejected, match="amount: Amount too big") as info:
        await provider.create_checkout(checkout_request())
    assert isinstance(info.value.__cause__, httpx.HTTPStatusError)
    await provider.aclose()


async def test_create_checkout_redirect_is_not_followed_and_is_rejected() -> None:
    # btcpay#2035: following an http->https redirect turns the POST into a GET.
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.method)
        if request.method == "GET":
            return httpx.Response(200, json=[])  # no invoice yet for this order
        return httpx.Response(301, headers={"location": "https://btcpay.test/api"})

    provider = _provider_with(handler)
    with pytest.raises(ProviderRejected):
        await provider.create_checkout(checkout_request())
    assert seen == ["GET", "POST"]
    await provider.aclose()


@pytest.mark.parametrize("error", [httpx.ConnectError("refused"), httpx.ReadTimeout("slow")])
async def test_create_checkout_network_failure_is_unavailable(error: Exception) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise error

    provider = _provider_with(handler)
    with pytest.raises(ProviderUnavailable) as info:
        await provider.create_checkout(checkout_request())
    assert info.value.__cause__ is error
    await provider.aclose()


# -- signature -----------------------------------------------------------------------------


def _settle_delivery(env: Env) -> Delivery:
    return _of_type(env.fake.pay_in_full(env.invoice()), "InvoiceSettled")


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "sha256=",
        "b438519edde5c8144a4f9bcec51a9d346eca6506887c2ceeae1c0092884a97b9",
        "sha1=b438519edde5c8144a4f9bcec51a9d346eca6506887c2ceeae1c0092884a97b9",
        "sha256=not-hex-at-all",
        "sha256=" + "0" * 64,
    ],
    ids=["missing", "empty", "no-digest", "no-prefix", "wrong-algo", "non-hex", "wrong"],
)
async def test_bad_signature_header_is_refused(env: Env, header: str | None) -> None:
    delivery = _settle_delivery(env)
    headers = {} if header is None else {"btcpay-sig": header}
    with pytest.raises(WebhookSignatureError):
        await env.provider.parse_webhook(delivery.body, headers)


async def test_one_byte_tamper_is_refused(env: Env) -> None:
    delivery = _settle_delivery(env)
    tampered = delivery.body.replace(b'"isRedelivery": false', b'"isRedelivery": fals3')
    assert tampered != delivery.body
    with pytest.raises(WebhookSignatureError):
        await env.provider.parse_webhook(tampered, delivery.headers)


async def test_signature_with_another_secret_is_refused(env: Env) -> None:
    delivery = _settle_delivery(env)
    headers = {"btcpay-sig": sign_body("someone-else", delivery.body)}
    with pytest.raises(WebhookSignatureError):
        await env.provider.parse_webhook(delivery.body, headers)


async def test_signature_is_checked_before_the_body_is_parsed(env: Env) -> None:
    with pytest.raises(WebhookSignatureError):
        await env.provider.parse_webhook(b"{not json", {"btcpay-sig": "sha256=" + "0" * 64})
    assert env.fake.received == []


@pytest.mark.parametrize(
    "body",
    [b"{not json", b"[]", b'{"invoiceId": "x"}', b'{"type": "InvoiceSettled"}'],
    ids=["malformed", "not-object", "no-type", "settle-without-invoice"],
)
async def test_signed_but_unusable_body_is_a_payload_error(env: Env, body: bytes) -> None:
    headers = {"btcpay-sig": sign_body(env.fake.webhook_secret, body)}
    with pytest.raises(WebhookPayloadError):
        await env.provider.parse_webhook(body, headers)


async def test_uppercase_hex_signature_is_accepted(env: Env) -> None:
    delivery = _settle_delivery(env)
    sig = delivery.headers["btcpay-sig"]
    event = await env.provider.parse_webhook(delivery.body, {"btcpay-sig": sig.upper()})
    assert isinstance(event[0], PaymentSettled)


# -- settlement ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "currency", "minor"), [("9.99", "USD", 999), ("1500", "JPY", 1500)]
)
async def test_settle_webhook_refetches_and_uses_the_invoice_amount(
    env: Env, amount: str, currency: str, minor: int
) -> None:
    invoice_id = env.invoice(amount, currency, order="ord_00000000000000000007")
    settled = _of_type(env.fake.pay_in_full(invoice_id), "InvoiceSettled")

    event = await env.parse(settled)

    assert event == PaymentSettled(
        provider=ProviderName.BTCPAY,
        provider_ref=invoice_id,
        order_id="ord_00000000000000000007",
        dedupe_key=f"{invoice_id}:InvoiceSettled",
        occurred_at=event.occurred_at,  # type: ignore[union-attr]
        amount_minor=minor,
        currency=currency,
        payment_ref=invoice_id,
    )
    assert ("GET", f"/api/v1/stores/{env.fake.store_id}/invoices/{invoice_id}", None) in (
        env.fake.received
    )


async def test_redelivered_settle_has_a_new_delivery_id_and_the_same_dedupe_key(env: Env) -> None:
    first = _settle_delivery(env)
    again = env.fake.redeliver(first)
    assert again.delivery_id != first.delivery_id
    one, two = await env.parse(first), await env.parse(again)
    assert isinstance(two, PaymentSettled)
    assert isinstance(one, PaymentSettled)
    assert one.dedupe_key == two.dedupe_key


async def test_order_id_comes_from_the_fetched_invoice_not_the_webhook(env: Env) -> None:
    invoice_id = env.invoice(order="ord_0000000000000000beef")
    env.fake.pay_in_full(invoice_id)
    body, headers = env.signed(
        {
            "type": "InvoiceSettled",
            "invoiceId": invoice_id,
            "metadata": {"orderId": "ord_0000000000000000f00d"},
        }
    )
    [event] = await env.provider.parse_webhook(body, headers)
    assert isinstance(event, PaymentSettled)
    assert event.order_id == "ord_0000000000000000beef"


async def test_settle_claim_for_an_unsettled_invoice_settles_nothing(env: Env) -> None:
    # given a correctly signed InvoiceSettled (e.g. replayed or out of order) for a New invoice
    invoice_id = env.invoice()
    body, headers = env.signed(
        {"type": "InvoiceSettled", "invoiceId": invoice_id, "overPaid": False}
    )
    # when it is parsed
    [event] = await env.provider.parse_webhook(body, headers)
    # then it is Ignored, so it does not take the settle dedupe slot
    assert isinstance(event, Ignored)
    assert event.provider_ref == invoice_id


async def test_settle_for_an_invoice_btcpay_does_not_know_is_ignored(env: Env) -> None:
    body, headers = env.signed({"type": "InvoiceSettled", "invoiceId": "NoSuchInvoice"})
    [event] = await env.provider.parse_webhook(body, headers)
    assert isinstance(event, Ignored)


@pytest.mark.parametrize("status", [500, 503])
async def test_btcpay_down_during_refetch_is_unavailable(env: Env, status: int) -> None:
    delivery = _settle_delivery(env)
    env.fake.outage_status = status
    with pytest.raises(ProviderUnavailable):
        await env.parse(delivery)


async def test_btcpay_unreachable_during_refetch_is_unavailable(env: Env) -> None:
    delivery = _settle_delivery(env)

    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused")

    provider = BTCPayProvider(env.harness.settings(), transport=httpx.MockTransport(handler))
    with pytest.raises(ProviderUnavailable):
        await provider.parse_webhook(delivery.body, delivery.headers)
    await provider.aclose()


# -- flags, decided on the fetched invoice -------------------------------------------------


async def test_overpaid_invoice_settles_for_what_was_paid_with_a_note(env: Env) -> None:
    invoice_id = env.invoice("9.99")
    events = await env.parse_all(env.fake.overpay(invoice_id))
    settled = events["InvoiceSettled"]
    assert isinstance(settled, PaymentSettled)
    assert (settled.amount_minor, settled.notes) == (1000, ("overpaid",))


async def test_webhook_overpaid_flag_is_not_trusted(env: Env) -> None:
    invoice_id = env.invoice()
    env.fake.pay_in_full(invoice_id)
    body, headers = env.signed(
        {"type": "InvoiceSettled", "invoiceId": invoice_id, "overPaid": True}
    )
    [event] = await env.provider.parse_webhook(body, headers)
    assert isinstance(event, PaymentSettled)
    assert event.notes == ()


async def test_partial_payment_is_pending_then_fails_when_expired(env: Env) -> None:
    invoice_id = env.invoice()
    received = await env.parse(env.fake.pay_partially(invoice_id)[0])
    expired = await env.parse(_of_type(env.fake.expire(invoice_id), "InvoiceExpired"))
    assert isinstance(received, PaymentPending)
    assert "PaidPartial" in received.detail
    assert isinstance(expired, PaymentFailed)
    assert expired.reason == "expired, partially paid"


async def test_expired_partial_extra_event_is_ignored(env: Env) -> None:
    invoice_id = env.invoice()
    env.fake.pay_partially(invoice_id)
    extra = _of_type(env.fake.expire(invoice_id), "InvoiceExpiredPaidPartial")
    assert isinstance(await env.parse(extra), Ignored)


async def test_unpaid_expired_invoice_fails(env: Env) -> None:
    invoice_id = env.invoice()
    event = await env.parse(env.fake.expire(invoice_id)[0])
    assert isinstance(event, PaymentFailed)
    assert (event.reason, event.dedupe_key) == ("expired", f"{invoice_id}:InvoiceExpired")


async def test_invoice_that_failed_to_confirm_fails_as_invalid(env: Env) -> None:
    invoice_id = env.invoice()
    env.fake.receive_full_payment(invoice_id)
    event = await env.parse(env.fake.fail_to_confirm(invoice_id)[0])
    assert isinstance(event, PaymentFailed)
    assert event.reason == "invalid"


async def test_manually_marked_invalid_fails_and_withdraws_any_settlement(env: Env) -> None:
    invoice_id = env.invoice()
    delivery = env.fake.mark_invalid(invoice_id)[0]
    failed, withdrawn = await env.provider.parse_webhook(delivery.body, delivery.headers)
    assert isinstance(failed, PaymentFailed)
    assert failed.reason == "manually marked invalid"
    assert isinstance(withdrawn, PaymentReversed)
    assert withdrawn.payment_ref == invoice_id
    assert withdrawn.dedupe_key != failed.dedupe_key


async def test_manually_marked_settled_settles_with_a_note(env: Env) -> None:
    invoice_id = env.invoice("12.50", "EUR")
    event = await env.parse(env.fake.mark_settled(invoice_id)[0])
    assert isinstance(event, PaymentSettled)
    assert (event.amount_minor, event.currency) == (1250, "EUR")
    assert event.notes == ("manually marked settled",)


async def test_expired_event_for_an_invoice_since_settled_is_ignored(env: Env) -> None:
    invoice_id = env.invoice()
    expired = env.fake.expire(invoice_id)[0]
    env.fake.mark_settled(invoice_id)
    assert isinstance(await env.parse(expired), Ignored)


async def test_payment_events_before_settlement_are_pending(env: Env) -> None:
    invoice_id = env.invoice()
    events = await env.parse_all(env.fake.receive_full_payment(invoice_id))
    events |= await env.parse_all(env.fake.confirm(invoice_id)[:1])
    assert set(events) == {"InvoiceReceivedPayment", "InvoiceProcessing", "InvoicePaymentSettled"}
    for event_type, event in events.items():
        assert isinstance(event, PaymentPending)
        assert event.dedupe_key.startswith(f"{invoice_id}:{event_type}")
        assert event.amount_paid_minor == 999


async def test_unrelated_events_are_ignored_without_a_refetch(env: Env) -> None:
    _, [created] = env.fake.create_invoice(amount="1.00")
    payout, payout_headers = env.signed({"type": "PayoutCreated", "payoutId": "p1"})
    test_body, test_headers = env.signed(
        {"type": "InvoiceSettled", "invoiceId": "__test__0d5d1b3c__test__"}
    )
    assert isinstance(await env.parse(created), Ignored)
    assert isinstance((await env.provider.parse_webhook(payout, payout_headers))[0], Ignored)
    assert isinstance((await env.provider.parse_webhook(test_body, test_headers))[0], Ignored)
    assert env.fake.received == []


# -- late payment ------------------------------------------------------------------------------


async def test_late_payment_settles_once_confirmed_with_policy_settle(env: Env) -> None:
    invoice_id = env.invoice("9.99")
    deliveries = env.fake.pay_after_expiry(invoice_id)
    # the fake sends what BTCPay sends, in its order: expiry first
    assert [d.event_type for d in deliveries] == [
        "InvoiceExpired",
        "InvoiceReceivedPayment",
        "InvoicePaidAfterExpiration",
        "InvoicePaymentSettled",
    ]
    settled = await env.parse(deliveries[-1])
    assert isinstance(settled, PaymentSettled)
    assert settled.dedupe_key == f"{invoice_id}:PaidLate"
    assert settled.payment_ref == invoice_id
    assert (settled.amount_minor, settled.notes) == (999, ("paid after expiration",))


async def test_unconfirmed_late_payment_is_not_settled_and_asks_for_a_recheck(env: Env) -> None:
    # item 8.1: PaidLate counts unconfirmed (replaceable) payments
    invoice_id = env.invoice("9.99")
    env.fake.expire(invoice_id)
    env.fake.pay_after_expiry(invoice_id, Decimal("0.10"))  # confirmed, 1%
    deliveries = env.fake.pay_after_expiry(invoice_id, confirmed=False)  # 99%, unconfirmed
    for delivery in deliveries:
        event = await env.parse(delivery)
        assert isinstance(event, Ignored), delivery.event_type
        assert event.recheck_soon
    assert env.fake.invoices[invoice_id].additional_status == "PaidLate"
    # once the big payment confirms, the re-check (or its webhook) settles for what settled
    confirmed = env.fake.confirm(invoice_id)
    settled = await env.parse(confirmed[-1])
    assert isinstance(settled, PaymentSettled)
    assert settled.amount_minor == 999
    polled = await env.provider.fetch_status(invoice_id)
    assert isinstance(polled, PaymentSettled)
    assert (polled.dedupe_key, polled.amount_minor) == (settled.dedupe_key, 999)


async def test_instant_late_payment_settled_before_paid_late_is_rechecked(env: Env) -> None:
    # item 8.11: Lightning settles the payment before BTCPay marks the invoice PaidLate
    invoice_id = env.invoice("9.99")
    env.fake.expire(invoice_id)
    inv = env.fake.invoices[invoice_id]
    deliveries = env.fake.pay_after_expiry(invoice_id, instant=True)
    assert [d.event_type for d in deliveries] == [
        "InvoiceReceivedPayment",
        "InvoicePaymentSettled",
        "InvoicePaidAfterExpiration",
    ]
    # given our re-fetch of InvoicePaymentSettled ran before BTCPay set PaidLate
    inv.additional_status = "None"
    early = await env.parse(deliveries[1])
    inv.additional_status = "PaidLate"
    # then it did not take a slot and asked for a re-check; the re-check settles
    assert isinstance(early, Ignored)
    assert early.recheck_soon
    polled = await env.provider.fetch_status(invoice_id)
    assert isinstance(polled, PaymentSettled)
    assert polled.dedupe_key == f"{invoice_id}:PaidLate"


async def test_late_payment_needs_review_with_policy_review(review_env: Env) -> None:
    env = review_env
    invoice_id = env.invoice()
    events = await env.parse_all(env.fake.pay_after_expiry(invoice_id))
    assert not any(isinstance(e, PaymentSettled) for e in events.values())
    parked = events["InvoicePaymentSettled"]
    assert isinstance(parked, PaymentNeedsReview)
    assert parked.dedupe_key == f"{invoice_id}:PaidLate"
    assert (parked.amount_minor, parked.currency) == (999, "USD")
    assert "review" in parked.reason


async def test_reviewed_late_payment_marked_settled_in_btcpay_settles(review_env: Env) -> None:
    env = review_env
    invoice_id = env.invoice()
    env.fake.pay_after_expiry(invoice_id)
    event = await env.parse(env.fake.mark_settled(invoice_id)[0])
    assert isinstance(event, PaymentSettled)
    assert event.dedupe_key == f"{invoice_id}:InvoiceSettled"


# -- reconciliation -------------------------------------------------------------------------


def _move(invoice: FakeInvoice, status: str, extra: str = "None") -> None:
    invoice.status, invoice.additional_status = status, extra


@pytest.mark.parametrize(
    ("status", "extra", "kind", "key_suffix"),
    [
        ("Processing", "None", PaymentPending, "InvoiceProcessing"),
        ("Settled", "None", PaymentSettled, "InvoiceSettled"),
        ("Settled", "PaidOver", PaymentSettled, "InvoiceSettled"),
        ("Expired", "None", PaymentFailed, "InvoiceExpired"),
        ("Expired", "PaidPartial", PaymentFailed, "InvoiceExpired"),
        ("Invalid", "Marked", PaymentFailed, "InvoiceInvalid"),
    ],
)
async def test_fetch_status_maps_the_invoice_with_webhook_dedupe_keys(
    env: Env, status: str, extra: str, kind: type, key_suffix: str
) -> None:
    invoice_id = env.invoice()
    _move(env.fake.invoices[invoice_id], status, extra)
    event = await env.provider.fetch_status(invoice_id)
    assert isinstance(event, kind)
    assert event.dedupe_key == f"{invoice_id}:{key_suffix}"  # type: ignore[union-attr]
    assert event.order_id == "ord_00000000000000000001"  # type: ignore[union-attr]


async def test_fetch_status_of_a_new_or_unknown_invoice_is_none(env: Env) -> None:
    assert await env.provider.fetch_status(env.invoice()) is None
    assert await env.provider.fetch_status("NoSuchInvoice") is None


async def test_fetch_status_settlement_duplicates_the_later_webhook(env: Env) -> None:
    invoice_id = env.invoice()
    settled = _of_type(env.fake.pay_in_full(invoice_id), "InvoiceSettled")
    polled = await env.provider.fetch_status(invoice_id)
    pushed = await env.parse(settled)
    assert isinstance(polled, PaymentSettled)
    assert isinstance(pushed, PaymentSettled)
    assert polled.dedupe_key == pushed.dedupe_key


# -- through the app ------------------------------------------------------------------------


async def test_refused_settle_claim_does_not_block_the_genuine_one_through_the_app(
    db_url: str, settings_factory: Callable[..., Settings], catalog: Catalog
) -> None:
    harness = BTCPayGreenfieldHarness()
    try:
        provider = await harness.build_provider()
        app = create_app(
            settings_factory(database_url=db_url),
            catalog=catalog,
            providers={provider.name: provider},
            run_migrations=False,
        )
        async with running(app) as client:
            resp = await client.post("/checkout/btcpay/pro", json={"email": "buyer@example.com"})
            assert resp.status_code == 201, resp.text
            order_id = resp.json()["order_id"]
            invoice_id = (await Order.get(id=order_id)).provider_ref
            assert invoice_id is not None
            # given a signed InvoiceSettled that arrives before the invoice is paid
            early = json.dumps({"type": "InvoiceSettled", "invoiceId": invoice_id}).encode()
            headers = {"btcpay-sig": sign_body(harness.fake.webhook_secret, early)}
            refused = await client.post("/webhooks/btcpay", content=early, headers=headers)
            # and BTCPay is down while the genuine one is first delivered
            genuine = _of_type(harness.fake.pay_in_full(invoice_id), "InvoiceSettled")
            harness.fake.outage_status = 502
            outage = await client.post(
                "/webhooks/btcpay", content=genuine.body, headers=genuine.headers
            )
            harness.fake.outage_status = None
            # when BTCPay redelivers it
            retry = harness.fake.redeliver(genuine)
            settled = await client.post(
                "/webhooks/btcpay", content=retry.body, headers=retry.headers
            )

            # then only the verified delivery settled the order, exactly once
            assert refused.status_code == 200
            assert refused.json()["events"][0]["result"] == "ignored"
            assert outage.status_code == 503
            assert settled.status_code == 200, settled.text
            assert (await Order.get(id=order_id)).status == OrderStatus.SETTLED
            assert await License.filter(order_id=order_id).count() == 1
    finally:
        await harness.aclose()


# -- amounts ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("paid", "currency", "minor"),
    [
        ("9.98999999", "USD", 999),
        ("9.00", "USD", 900),
        ("9.994", "USD", 999),
        ("1499.6", "JPY", 1500),
    ],
)
async def test_paid_amount_is_rounded_to_the_nearest_minor_unit(
    env: Env, paid: str, currency: str, minor: int
) -> None:
    # BTCPay converts satoshis back at its rate; sub-minor-unit dust is not underpayment
    invoice_id = env.invoice("9.99" if currency == "USD" else "1500", currency)
    env.fake.pay_in_full(invoice_id)
    env.fake.invoices[invoice_id].payments[0].fiat = Decimal(paid)
    [event] = await env.provider.parse_webhook(*_signed_settled(env, invoice_id))
    assert isinstance(event, PaymentSettled)
    assert event.amount_minor == minor


def _signed_settled(env: Env, invoice_id: str) -> tuple[bytes, dict[str, str]]:
    return env.signed({"type": "InvoiceSettled", "invoiceId": invoice_id})
