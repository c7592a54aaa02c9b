"""StripeProvider against the fake Stripe API, through the real `stripe` SDK.

No patching: the provider's SDK client sends real requests into the fake (in process through
an httpx transport, or over 127.0.0.1 under uvicorn), and webhooks are real `stripe.Event`
payloads the fake signs exactly as Stripe does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest
import stripe
import uvicorn
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from config.catalog import Catalog
from config.money import to_minor
from config.settings import Settings, StripeSettings
from gateway.db.models import InboxEvent, License, LicenseStatus, Order, OrderStatus
from providers.base import CheckoutRequest, PaymentProvider
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
    PaymentReversed,
    PaymentSettled,
    ProviderName,
)
from providers.registry import build_providers
from providers.stripe.provider import StripeProvider
from sandbox.stripe.api import FakeStripe
from sandbox.stripe.harness import StripeContractHarness
from sandbox.stripe.state import SignedEvent
from tests.support.procs import free_port
from tests.support.stripe import stripe_gateway

MakeProvider = Callable[..., StripeProvider]
# When the test orders were created: a fixed instant, as the gateway's order row gives one.
ORDER_CREATED_AT = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
def fake() -> FakeStripe:
    return FakeStripe()


@pytest.fixture
async def make_provider(fake: FakeStripe) -> AsyncIterator[MakeProvider]:
    built: list[StripeProvider] = []

    def make(**overrides: Any) -> StripeProvider:
        values: dict[str, Any] = {
            "enabled": True,
            "secret_key": SecretStr(fake.api_key),
            "webhook_secret": SecretStr(fake.webhook_secret),
            "max_network_retries": 0,
        }
        values.update(overrides)
        provider = StripeProvider(StripeSettings(**values), transport=fake.transport())
        built.append(provider)
        return provider

    yield make
    for provider in built:
        await provider.aclose()


@pytest.fixture
def provider(make_provider: MakeProvider) -> StripeProvider:
    return make_provider()


def checkout_request(
    order_id: str = "ord_1", amount: str = "9.99", currency: str = "USD", **extra: Any
) -> CheckoutRequest:
    values: dict[str, Any] = {
        "order_id": order_id,
        "product_id": "pro",
        "product_name": "Pro license",
        "description": "One seat, perpetual",
        "amount_minor": to_minor(Decimal(amount), currency),
        "currency": currency,
        "buyer_email": "buyer@example.com",
        "success_url": f"https://shop.example/orders/{order_id}",
        "cancel_url": f"https://shop.example/orders/{order_id}?cancelled=1",
        "notification_url": "https://shop.example/webhooks/stripe",
        "idempotency_key": f"checkout:{order_id}",
        "created_at": ORDER_CREATED_AT,
    }
    values.update(extra)
    return CheckoutRequest(**values)


async def parse(provider: StripeProvider, signed: SignedEvent) -> PaymentEvent:
    events = await provider.parse_webhook(signed.body, signed.headers)
    assert len(events) == 1
    return events[0]


async def open_session(provider: StripeProvider, order_id: str = "ord_1", **kw: Any) -> str:
    return (await provider.create_checkout(checkout_request(order_id, **kw))).provider_ref


# -- create_checkout ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "currency", "minor"),
    [("9.99", "USD", "999"), ("1500", "JPY", "1500"), ("1.230", "KWD", "1230")],
)
async def test_checkout_sends_the_amount_in_stripe_minor_units(
    fake: FakeStripe, provider: StripeProvider, amount: str, currency: str, minor: str
) -> None:
    session = await provider.create_checkout(checkout_request("ord_7", amount, currency))

    [sent] = fake.requests
    price = sent.params["line_items"][0]["price_data"]
    assert (price["unit_amount"], price["currency"]) == (minor, currency.lower())
    assert session.provider_ref.startswith("cs_test_")
    assert session.checkout_url == fake.sessions[session.provider_ref]["url"]


async def test_checkout_round_trips_our_order_id_and_buyer(
    fake: FakeStripe, provider: StripeProvider
) -> None:
    session = await provider.create_checkout(checkout_request("ord_42"))

    [sent] = fake.requests
    assert sent.method == "POST"
    assert sent.headers["authorization"] == f"Bearer {fake.api_key}"
    assert sent.params["mode"] == "payment"
    assert sent.params["client_reference_id"] == "ord_42"
    assert sent.params["metadata"] == {"order_id": "ord_42"}
    assert sent.params["payment_intent_data"] == {"metadata": {"order_id": "ord_42"}}
    assert sent.params["customer_email"] == "buyer@example.com"
    assert sent.params["success_url"] == "https://shop.example/orders/ord_42"
    assert sent.params["line_items"][0]["quantity"] == "1"
    assert sent.params["line_items"][0]["price_data"]["product_data"] == {
        "name": "Pro license",
        "description": "One seat, perpetual",
    }
    assert "expires_at" not in sent.params
    # Stripe's default session lifetime, read back from the response
    assert session.expires_at is not None
    assert session.expires_at > datetime.now(UTC)


@pytest.mark.parametrize(
    ("minutes", "sent_minutes"),
    # Stripe's bounds (30 min .. 24 h) are kept a minute clear so clock skew cannot fail
    # them, and the shortest lifetime leaves a 5-minute window for byte-identical retries
    [(45, 45), (30, 36), (24 * 60, 24 * 60 - 1)],
)
async def test_session_lifetime_is_counted_from_the_order_creation(
    fake: FakeStripe, make_provider: MakeProvider, minutes: int, sent_minutes: int
) -> None:
    provider = make_provider(session_expires_minutes=minutes)
    # Created now, not at import: a long suite would push a 31-minute lifetime past Stripe's
    # 30-minute floor before this test runs.
    created = datetime.now(UTC).replace(microsecond=0)

    session = await provider.create_checkout(checkout_request(created_at=created))

    sent_at = int(fake.requests[0].params["expires_at"])
    assert sent_at == int(created.timestamp()) + sent_minutes * 60
    assert session.expires_at == datetime.fromtimestamp(sent_at, UTC)


async def test_retry_after_the_clock_moved_replays_the_same_session(
    fake: FakeStripe, make_provider: MakeProvider
) -> None:
    # given a session lifetime setting, and a first create that Stripe answered
    provider = make_provider(session_expires_minutes=60)
    first = await provider.create_checkout(checkout_request("ord_late"))

    # when the gateway retries the same order in a later second (e.g. after a timeout)
    await asyncio.sleep(1.05)
    again = await provider.create_checkout(checkout_request("ord_late"))

    # then the body is identical, so Stripe replays instead of refusing the key
    assert again == first
    assert fake.requests[0].params == fake.requests[1].params


async def test_order_idempotency_key_reaches_stripe_and_a_retry_gets_the_same_session(
    fake: FakeStripe, provider: StripeProvider
) -> None:
    first = await provider.create_checkout(checkout_request("ord_9"))
    again = await provider.create_checkout(checkout_request("ord_9"))

    assert [r.headers["idempotency-key"] for r in fake.requests] == ["checkout:ord_9"] * 2
    assert again == first
    assert len(fake.sessions) == 1


async def test_reused_idempotency_key_with_other_params_is_rejected(
    provider: StripeProvider,
) -> None:
    await provider.create_checkout(checkout_request("ord_9"))

    with pytest.raises(ProviderRejected, match="idempotent"):
        await provider.create_checkout(checkout_request("ord_10", idempotency_key="checkout:ord_9"))


async def test_three_decimal_amount_not_ending_in_zero_is_refused_before_sending(
    fake: FakeStripe, provider: StripeProvider
) -> None:
    with pytest.raises(ProviderRejected, match="multiples of 10"):
        await provider.create_checkout(checkout_request(amount="1.231", currency="KWD"))
    assert fake.requests == []


async def test_unknown_currency_is_refused_before_sending(
    fake: FakeStripe, provider: StripeProvider
) -> None:
    request = checkout_request()
    bogus = CheckoutRequest(
        **{name: getattr(request, name) for name in request.__slots__} | {"currency": "XXX"}
    )
    with pytest.raises(ProviderRejected, match="XXX"):
        await provider.create_checkout(bogus)
    assert fake.requests == []


@pytest.mark.parametrize("status", [500, 503, 429])
async def test_stripe_server_errors_and_rate_limits_are_retriable(
    fake: FakeStripe, provider: StripeProvider, status: int
) -> None:
    fake.fail_status = status

    with pytest.raises(ProviderUnavailable):
        await provider.create_checkout(checkout_request())


async def test_unreachable_stripe_is_retriable(fake: FakeStripe, provider: StripeProvider) -> None:
    fake.unreachable = True

    with pytest.raises(ProviderUnavailable):
        await provider.create_checkout(checkout_request())


async def test_sdk_retries_a_transient_error_with_the_same_idempotency_key(
    fake: FakeStripe, make_provider: MakeProvider
) -> None:
    # given one 500 and then recovery, with max_network_retries=1 from settings
    provider = make_provider(max_network_retries=1)
    fake.fail_status, fake.fail_remaining = 500, 1

    session = await provider.create_checkout(checkout_request("ord_r"))

    assert session.provider_ref in fake.sessions
    assert [r.headers["idempotency-key"] for r in fake.requests] == ["checkout:ord_r"] * 2


async def test_bad_api_key_is_a_permanent_rejection(make_provider: MakeProvider) -> None:
    provider = make_provider(secret_key=SecretStr("sk_test_not_the_right_key"))

    with pytest.raises(ProviderRejected, match="401"):
        await provider.create_checkout(checkout_request())


async def test_closed_provider_no_longer_sends(provider: StripeProvider) -> None:
    await provider.aclose()

    with pytest.raises(ProviderUnavailable):
        await provider.create_checkout(checkout_request())


# -- webhooks: the payment lifecycle --------------------------------------------------


async def test_paid_completion_settles_our_order_with_stripes_amount(
    fake: FakeStripe, provider: StripeProvider
) -> None:
    sid = await open_session(provider, "ord_42", amount="1500", currency="JPY")
    signed = fake.complete_session(sid)

    event = await parse(provider, signed)

    assert isinstance(event, PaymentSettled)
    assert event.order_id == "ord_42"
    assert (event.amount_minor, event.currency) == (1500, "JPY")
    assert event.provider_ref == sid
    assert event.payment_ref == fake.sessions[sid]["payment_intent"]
    assert event.payment_ref is not None
    assert event.payment_ref.startswith("pi_")
    assert event.dedupe_key == signed.event["id"]
    assert event.occurred_at == datetime.fromtimestamp(signed.event["created"], UTC)


async def test_delayed_method_is_pending_until_async_payment_succeeds(
    fake: FakeStripe, provider: StripeProvider
) -> None:
    sid = await open_session(provider, "ord_d")

    pending = await parse(provider, fake.complete_session(sid, paid=False))
    settled = await parse(provider, fake.succeed_async_payment(sid))

    assert isinstance(pending, PaymentPending)
    assert pending.order_id == "ord_d"
    assert isinstance(settled, PaymentSettled)
    assert (settled.order_id, settled.amount_minor, settled.currency) == ("ord_d", 999, "USD")
    assert pending.dedupe_key != settled.dedupe_key


async def test_failed_delayed_payment_and_expiry_fail_the_order(
    fake: FakeStripe, provider: StripeProvider
) -> None:
    delayed = await open_session(provider, "ord_f")
    abandoned = await open_session(provider, "ord_e")
    await parse(provider, fake.complete_session(delayed, paid=False))

    failed = await parse(provider, fake.fail_async_payment(delayed))
    expired = await parse(provider, fake.expire_session(abandoned))

    assert isinstance(failed, PaymentFailed)
    assert failed.order_id == "ord_f"
    assert isinstance(expired, PaymentFailed)
    assert (expired.order_id, expired.provider_ref) == ("ord_e", abandoned)
    assert "expired" in expired.reason


async def test_full_refund_reverses_the_order_found_through_the_payment_intent(
    fake: FakeStripe, provider: StripeProvider
) -> None:
    sid = await open_session(provider, "ord_rf")
    await parse(provider, fake.complete_session(sid))
    intent = fake.sessions[sid]["payment_intent"]

    event = await parse(provider, fake.refund(sid))

    assert isinstance(event, PaymentReversed)
    assert (event.order_id, event.payment_ref, event.provider_ref) == ("ord_rf", intent, intent)
    assert event.reason == "refunded"
    assert fake.requests[-1].path == f"/v1/payment_intents/{intent}"


async def test_partial_refund_keeps_the_license_until_the_rest_is_refunded(
    fake: FakeStripe, provider: StripeProvider
) -> None:
    sid = await open_session(provider, "ord_pr")
    await parse(provider, fake.complete_session(sid))

    partial = await parse(provider, fake.refund(sid, 500))
    rest = await parse(provider, fake.refund(sid))

    assert isinstance(partial, Ignored)
    assert "partial" in partial.reason
    assert isinstance(rest, PaymentReversed)
    assert rest.order_id == "ord_pr"


async def test_dispute_reverses_the_order(fake: FakeStripe, provider: StripeProvider) -> None:
    sid = await open_session(provider, "ord_dp")
    await parse(provider, fake.complete_session(sid))

    event = await parse(provider, fake.dispute(sid))

    assert isinstance(event, PaymentReversed)
    assert event.order_id == "ord_dp"
    assert "disputed" in event.reason


async def test_reversal_while_stripe_is_down_is_retriable_not_lost(
    fake: FakeStripe, provider: StripeProvider
) -> None:
    # given a refund whose payment intent cannot be fetched right now
    sid = await open_session(provider, "ord_down")
    await parse(provider, fake.complete_session(sid))
    signed = fake.refund(sid)
    fake.unreachable = True

    # then the webhook fails retriably (503), so Stripe redelivers it later
    with pytest.raises(ProviderUnavailable):
        await provider.parse_webhook(signed.body, signed.headers)
    fake.unreachable = False
    assert isinstance(await parse(provider, signed), PaymentReversed)


async def test_unknown_event_type_is_ignored(fake: FakeStripe, provider: StripeProvider) -> None:
    signed = fake.emit("customer.created", {"id": "cus_1", "object": "customer"})

    event = await parse(provider, signed)

    assert isinstance(event, Ignored)
    assert "customer.created" in event.reason


async def test_session_from_another_integration_is_ignored(
    fake: FakeStripe, provider: StripeProvider
) -> None:
    # given a payment link session on the same account: no client_reference_id, no metadata
    session = fake.create_session(
        {
            "mode": "payment",
            "line_items": [{"price_data": {"currency": "usd", "unit_amount": "100"}}],
        }
    )

    event = await parse(provider, fake.complete_session(session["id"]))

    assert isinstance(event, Ignored)


async def test_event_from_the_other_mode_is_ignored(fake: FakeStripe) -> None:
    # given a gateway on a live key whose endpoint receives a test-mode event
    settings = StripeSettings(
        enabled=True,
        secret_key=SecretStr("sk_live_gateway"),
        webhook_secret=SecretStr(fake.webhook_secret),
    )
    provider = StripeProvider(settings, transport=fake.transport())
    try:
        session = fake.create_session(
            {
                "mode": "payment",
                "client_reference_id": "ord_x",
                "line_items": [{"price_data": {"currency": "usd", "unit_amount": "100"}}],
            }
        )
        event = await parse(provider, fake.complete_session(session["id"]))
    finally:
        await provider.aclose()

    assert isinstance(event, Ignored)
    assert "livemode" in event.reason


async def test_event_in_another_api_version_is_handled_and_logged_once(
    fake: FakeStripe, provider: StripeProvider, caplog: pytest.LogCaptureFixture
) -> None:
    # given events rendered by an endpoint pinned to an older API version
    sid = await open_session(provider, "ord_v")
    old = [fake.complete_session(sid)] + [
        fake.emit("customer.created", {"id": "cus_v", "object": "customer"}) for _ in range(2)
    ]
    caplog.set_level("WARNING", logger="providers.stripe.provider")

    events = []
    for signed in old:
        event = dict(signed.event, api_version="2024-06-20")
        body = json.dumps(event).encode()
        events += await provider.parse_webhook(body, {"stripe-signature": fake.sign(body)})

    # then they are still mapped, and the operator is told once
    assert isinstance(events[0], PaymentSettled)
    warnings = [
        r.getMessage()
        for r in caplog.records
        if r.name == "providers.stripe.provider" and r.levelname == "WARNING"
    ]
    assert [w.count("2024-06-20") for w in warnings] == [1]


# -- webhooks: signature and payload ----------------------------------------------------


@pytest.fixture
async def settle(fake: FakeStripe, provider: StripeProvider) -> SignedEvent:
    return fake.complete_session(await open_session(provider, "ord_sig"))


def _with_signature(signed: SignedEvent, value: str | None) -> dict[str, str]:
    headers = {k: v for k, v in signed.headers.items() if k != "stripe-signature"}
    if value is not None:
        headers["stripe-signature"] = value
    return headers


@pytest.mark.parametrize(
    ("case", "header"),
    [
        ("missing header", None),
        ("empty header", ""),
        ("blank header", "   "),
        ("garbage", "not a signature"),
        ("wrong scheme", "t=1,v0=abc"),
        ("bad v1", "t={now},v1=" + "0" * 64),
        ("non-ascii v1", "t={now},v1=é"),
    ],
)
async def test_bad_signature_header_is_rejected(
    provider: StripeProvider, settle: SignedEvent, case: str, header: str | None
) -> None:
    value = None if header is None else header.replace("{now}", str(int(time.time())))
    with pytest.raises(WebhookSignatureError):
        await provider.parse_webhook(settle.body, _with_signature(settle, value))


async def test_timestamp_older_than_five_minutes_is_rejected(
    fake: FakeStripe, provider: StripeProvider, settle: SignedEvent
) -> None:
    stale = fake.sign(settle.body, timestamp=int(time.time()) - 301)
    fresh = fake.sign(settle.body, timestamp=int(time.time()) - 240)

    with pytest.raises(WebhookSignatureError, match="tolerance"):
        await provider.parse_webhook(settle.body, _with_signature(settle, stale))
    assert await provider.parse_webhook(settle.body, _with_signature(settle, fresh))


async def test_timestamp_far_in_the_future_is_rejected(
    fake: FakeStripe, provider: StripeProvider, settle: SignedEvent
) -> None:
    future = fake.sign(settle.body, timestamp=int(time.time()) + 3600)

    with pytest.raises(WebhookSignatureError, match="future"):
        await provider.parse_webhook(settle.body, _with_signature(settle, future))


async def test_one_tampered_byte_is_rejected(provider: StripeProvider, settle: SignedEvent) -> None:
    at = settle.body.index(b"ord_sig") + 4
    tampered = settle.body[:at] + b"X" + settle.body[at + 1 :]

    with pytest.raises(WebhookSignatureError):
        await provider.parse_webhook(tampered, settle.headers)


async def test_reserialised_json_is_rejected(provider: StripeProvider, settle: SignedEvent) -> None:
    # same content, different bytes: the signature covers the exact bytes Stripe sent
    pretty = json.dumps(json.loads(settle.body), indent=2).encode()

    with pytest.raises(WebhookSignatureError):
        await provider.parse_webhook(pretty, settle.headers)


async def test_signature_with_another_secret_is_rejected(
    fake: FakeStripe, provider: StripeProvider, settle: SignedEvent
) -> None:
    forged = fake.sign(settle.body, secret="whsec_someone_else")

    with pytest.raises(WebhookSignatureError):
        await provider.parse_webhook(settle.body, _with_signature(settle, forged))


async def test_non_utf8_body_is_rejected_as_unsigned(
    fake: FakeStripe, provider: StripeProvider
) -> None:
    body = b'{"id": "evt_\xff"}'
    header = stripe.WebhookSignature.generate_signature_header(
        body.decode("latin-1"), fake.webhook_secret
    )

    with pytest.raises(WebhookSignatureError):
        await provider.parse_webhook(body, {"stripe-signature": header})


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"[]",
        b'{"object": "event"}',
        b'{"id": "evt_1", "object": "event", "type": "checkout.session.completed"}',
        b'{"id": "evt_1", "object": "event", "type": "checkout.session.completed",'
        b' "livemode": false, "created": 1, "data": {"object": "cs_1"}}',
        b'{"id": "evt_1", "object": "event", "type": "checkout.session.completed",'
        b' "livemode": false, "created": 1, "data": {"object": {"id": "cs_1", "mode":'
        b' "payment", "metadata": {"order_id": "o"}, "payment_status": "paid"}}}',
        b'{"id": "evt_1", "object": "v2.core.event", "type": "v1.billing.meter.no_meter_found"}',
    ],
    ids=["not-json", "array", "no-fields", "no-data", "data-not-object", "no-amount", "thin"],
)
async def test_validly_signed_but_malformed_payload_is_a_payload_error(
    fake: FakeStripe, provider: StripeProvider, body: bytes
) -> None:
    with pytest.raises(WebhookPayloadError):
        await provider.parse_webhook(body, {"stripe-signature": fake.sign(body)})


# -- reconciliation ---------------------------------------------------------------------


async def test_fetch_status_follows_the_session_through_its_lifecycle(
    fake: FakeStripe, provider: StripeProvider
) -> None:
    paid = await open_session(provider, "ord_p")
    delayed = await open_session(provider, "ord_d")
    expired = await open_session(provider, "ord_x")
    assert await provider.fetch_status(paid) is None

    fake.complete_session(paid)
    fake.complete_session(delayed, paid=False)
    fake.expire_session(expired)

    settled = await provider.fetch_status(paid)
    assert isinstance(settled, PaymentSettled)
    assert (settled.order_id, settled.amount_minor, settled.currency) == ("ord_p", 999, "USD")
    assert settled.dedupe_key == f"reconcile:{paid}:paid"
    assert isinstance(await provider.fetch_status(delayed), PaymentPending)
    failed = await provider.fetch_status(expired)
    assert isinstance(failed, PaymentFailed)
    assert failed.order_id == "ord_x"


async def test_fetch_status_errors_are_translated(
    fake: FakeStripe, provider: StripeProvider
) -> None:
    with pytest.raises(ProviderRejected):
        await provider.fetch_status("cs_test_unknown")
    fake.fail_status = 503
    with pytest.raises(ProviderUnavailable):
        await provider.fetch_status("cs_test_unknown")


# -- wiring -----------------------------------------------------------------------------


async def test_registry_builds_the_stripe_provider_on_the_given_transport(
    fake: FakeStripe, tmp_path: Any
) -> None:
    settings = Settings(
        config_file=None,
        _env_file=None,
        data_dir=tmp_path,
        stripe=StripeSettings(
            enabled=True,
            secret_key=SecretStr(fake.api_key),
            webhook_secret=SecretStr(fake.webhook_secret),
        ),
        btcpay={"enabled": False},
    )
    providers = build_providers(settings, transport=fake.transport())
    try:
        stripe_provider = providers[ProviderName.STRIPE]
        assert isinstance(stripe_provider, PaymentProvider)
        await stripe_provider.create_checkout(checkout_request())
        assert len(fake.sessions) == 1
    finally:
        for built in providers.values():
            await built.aclose()


async def test_contract_harness_signs_settlements_for_any_order() -> None:
    harness = StripeContractHarness()
    try:
        provider = harness.build_provider()
        body, headers = harness.signed_settle_webhook("ord_h", 1230, "KWD")
        [event] = await provider.parse_webhook(body, headers)
        body, headers = harness.signed_unrelated_webhook()
        [unrelated] = await provider.parse_webhook(body, headers)
    finally:
        await harness.aclose()

    assert isinstance(event, PaymentSettled)
    assert (event.order_id, event.amount_minor, event.currency) == ("ord_h", 1230, "KWD")
    assert isinstance(unrelated, Ignored)


async def test_demo_controls_deliver_signed_webhooks_the_provider_accepts(
    fake: FakeStripe, provider: StripeProvider
) -> None:
    # given a fake that posts its webhooks to a receiver running our provider
    received: list[PaymentEvent] = []

    async def receive(request: Request) -> JSONResponse:
        body = await request.body()
        headers = {k.lower(): v for k, v in request.headers.items()}
        received.extend(await provider.parse_webhook(body, headers))
        return JSONResponse({"received": 1})

    receiver = Starlette(routes=[Route("/webhooks/stripe", receive, methods=["POST"])])
    fake.webhook_url = "http://gateway.test/webhooks/stripe"
    fake.webhook_transport = httpx.ASGITransport(app=receiver)
    sid = await open_session(provider, "ord_demo")

    # when the demo buyer pays on the hosted page, then the seller refunds
    async with httpx.AsyncClient(transport=fake.transport(), base_url="http://f.test") as c:
        paid = await c.post(f"/pay/{sid}", data={"method": "card"})
        refunded = await c.post(f"/_fake/sessions/{sid}/refund")

    assert paid.status_code == 303
    assert paid.headers["location"] == "https://shop.example/orders/ord_demo"
    assert refunded.json()["delivered_status"] == 200
    assert [type(e) for e in received] == [PaymentSettled, PaymentReversed]
    assert {e.order_id for e in received if not isinstance(e, Ignored)} == {"ord_demo"}


@contextlib.asynccontextmanager
async def serve(app: Starlette, port: int) -> AsyncIterator[None]:
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            await asyncio.sleep(0.01)
        yield
    finally:
        server.should_exit = True
        await task


async def test_provider_talks_to_the_fake_over_real_http_on_localhost(fake: FakeStripe) -> None:
    # given the fake under uvicorn and a provider with no injected transport
    port = free_port()
    settings = StripeSettings(
        enabled=True,
        secret_key=SecretStr(fake.api_key),
        webhook_secret=SecretStr(fake.webhook_secret),
        api_base=f"http://127.0.0.1:{port}",
        max_network_retries=0,
    )
    provider = StripeProvider(settings)
    try:
        async with serve(fake.app, port):
            session = await provider.create_checkout(checkout_request("ord_http"))
            fake.complete_session(session.provider_ref)
            status = await provider.fetch_status(session.provider_ref)
    finally:
        await provider.aclose()

    assert isinstance(status, PaymentSettled)
    assert status.order_id == "ord_http"
    assert fake.requests[0].headers["content-type"] == "application/x-www-form-urlencoded"


# -- through the gateway app (SQLite and PostgreSQL) ---------------------------------------


async def _checkout(client: httpx.AsyncClient) -> Order:
    resp = await client.post("/checkout/stripe/pro", json={"email": "buyer@example.com"})
    assert resp.status_code == 201, resp.text
    return await Order.get(id=resp.json()["order_id"])


async def _deliver(client: httpx.AsyncClient, signed: SignedEvent) -> httpx.Response:
    return await client.post("/webhooks/stripe", content=signed.body, headers=signed.headers)


async def test_app_delayed_payment_issues_the_license_only_when_funds_arrive(
    fake: FakeStripe, db_url: str, settings_factory: Callable[..., Settings], catalog: Catalog
) -> None:
    async with stripe_gateway(fake, db_url, settings_factory, catalog) as (client, _):
        order = await _checkout(client)
        assert order.provider_ref is not None

        # when the buyer pays by bank debit: pending, no license yet
        pending = await _deliver(client, fake.complete_session(order.provider_ref, paid=False))
        assert pending.status_code == 200, pending.text
        assert (await Order.get(id=order.id)).status == OrderStatus.PENDING
        assert await License.filter(order_id=order.id).count() == 0

        # then the funds arrive: settled, one license
        settled = await _deliver(client, fake.succeed_async_payment(order.provider_ref))
        assert settled.status_code == 200, settled.text
        assert (await Order.get(id=order.id)).status == OrderStatus.SETTLED
        assert await License.filter(order_id=order.id).count() == 1


async def test_app_full_refund_revokes_the_license_but_a_partial_one_does_not(
    fake: FakeStripe, db_url: str, settings_factory: Callable[..., Settings], catalog: Catalog
) -> None:
    async with stripe_gateway(fake, db_url, settings_factory, catalog) as (client, _):
        order = await _checkout(client)
        assert order.provider_ref is not None
        await _deliver(client, fake.complete_session(order.provider_ref))

        partial = await _deliver(client, fake.refund(order.provider_ref, 100))
        assert partial.status_code == 200, partial.text
        [lic] = await License.filter(order_id=order.id)
        assert lic.status == LicenseStatus.ACTIVE

        full = await _deliver(client, fake.refund(order.provider_ref))
        assert full.status_code == 200, full.text
        assert (await Order.get(id=order.id)).status == OrderStatus.REVERSED
        [lic] = await License.filter(order_id=order.id)
        assert lic.status == LicenseStatus.REVOKED


async def test_app_refused_webhooks_store_nothing_and_a_redelivery_still_counts(
    fake: FakeStripe, db_url: str, settings_factory: Callable[..., Settings], catalog: Catalog
) -> None:
    async with stripe_gateway(fake, db_url, settings_factory, catalog) as (client, _):
        order = await _checkout(client)
        assert order.provider_ref is not None
        settle = fake.complete_session(order.provider_ref)

        # a forged copy is refused with 400 and leaves no trace
        forged = dict(settle.headers, **{"stripe-signature": fake.sign(settle.body, secret="x")})
        answer = await client.post("/webhooks/stripe", content=settle.body, headers=forged)
        assert answer.status_code == 400, answer.text
        assert await InboxEvent.all().count() == 0

        await _deliver(client, settle)
        refund = fake.refund(order.provider_ref)

        # a refund that arrives while Stripe's API is unreachable: 503, slot left free
        fake.unreachable = True
        assert (await _deliver(client, refund)).status_code == 503
        assert (await Order.get(id=order.id)).status == OrderStatus.SETTLED

        # Stripe's redelivery of the same event is then applied
        fake.unreachable = False
        assert (await _deliver(client, refund)).status_code == 200
        assert (await Order.get(id=order.id)).status == OrderStatus.REVERSED
