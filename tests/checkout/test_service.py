"""POST /checkout/{provider}/{product}: orders, idempotency, failure paths."""

from __future__ import annotations

from collections.abc import Callable

from starlette.applications import Starlette

from config.catalog import Catalog
from config.settings import Settings
from gateway.app import create_app
from gateway.db.models import Order, OrderStatus
from providers.events import ProviderName
from sandbox.provider import FakeProvider
from sandbox.stripe.harness import StripeContractHarness
from tests.support.app import running


def _app(
    db_url: str, settings_factory: Callable[..., Settings], catalog: Catalog, fake: FakeProvider
) -> Starlette:
    return create_app(
        settings_factory(database_url=db_url),
        catalog=catalog,
        providers={fake.name: fake},
        run_migrations=False,
    )


async def test_checkout_creates_order_and_returns_urls(
    db_url: str, settings_factory: Callable[..., Settings], catalog: Catalog
) -> None:
    fake = FakeProvider(ProviderName.BTCPAY)
    async with running(_app(db_url, settings_factory, catalog, fake)) as client:
        resp = await client.post("/checkout/btcpay/enterprise", json={"email": "Buyer@Example.com"})

        assert resp.status_code == 201
        data = resp.json()
        order = await Order.get(id=data["order_id"])
        assert order.status == OrderStatus.CREATED
        assert (order.amount_minor, order.currency, order.product_id) == (3999, "USD", "enterprise")
        assert order.buyer_email == "Buyer@example.com"  # domain normalised, local part kept
        assert (
            data["checkout_url"]
            == order.checkout_url
            == f"https://pay.invalid/{order.provider_ref}"
        )
        assert (
            data["status_url"]
            == f"http://gateway.test/orders/{order.id}?token={order.status_token}"
        )
        request = fake.created[0]
        assert (request.order_id, request.amount_minor, request.currency) == (order.id, 3999, "USD")
        assert request.idempotency_key == f"checkout:{order.id}"
        assert request.notification_url == "http://gateway.test/webhooks/btcpay"


async def test_form_post_redirects_to_the_checkout(
    db_url: str, settings_factory: Callable[..., Settings], catalog: Catalog
) -> None:
    fake = FakeProvider(ProviderName.STRIPE)
    async with running(_app(db_url, settings_factory, catalog, fake)) as client:
        resp = await client.post("/checkout/stripe/pro", data={"email": "buyer@example.com"})

        assert resp.status_code == 303
        order = await Order.get(buyer_email="buyer@example.com")
        assert resp.headers["location"] == order.checkout_url


async def test_same_idempotency_key_returns_the_same_order_without_its_status_token(
    db_url: str, settings_factory: Callable[..., Settings], catalog: Catalog
) -> None:
    fake = FakeProvider(ProviderName.STRIPE)
    async with running(_app(db_url, settings_factory, catalog, fake)) as client:
        headers = {"Idempotency-Key": "cart-42"}
        body = {"email": "buyer@example.com"}
        first = await client.post("/checkout/stripe/pro", json=body, headers=headers)
        second = await client.post("/checkout/stripe/pro", json=body, headers=headers)

        assert (first.status_code, second.status_code) == (201, 200)
        assert second.json() == {
            "order_id": first.json()["order_id"],
            "checkout_url": first.json()["checkout_url"],
            "status_url": None,
            "replayed": True,
        }
        assert await Order.all().count() == 1
        assert len(fake.created) == 1


async def test_replaying_another_buyers_key_never_hands_out_the_status_token(
    db_url: str, settings_factory: Callable[..., Settings], catalog: Catalog
) -> None:
    fake = FakeProvider(ProviderName.STRIPE)
    async with running(_app(db_url, settings_factory, catalog, fake)) as client:
        # given a buyer's checkout, and someone who learned its key, email and product
        body, headers = {"email": "victim@example.com"}, {"Idempotency-Key": "cart-1"}
        first = await client.post("/checkout/stripe/pro", json=body, headers=headers)
        order = await Order.get(id=first.json()["order_id"])

        # when they repeat the request, as JSON and as a form
        replay = await client.post("/checkout/stripe/pro", json=body, headers=headers)
        form = await client.post("/checkout/stripe/pro", data=body, headers=headers)

        # then nothing they get carries the capability that shows the license key
        for resp in (replay, form):
            assert order.status_token not in resp.text
            assert order.status_token not in resp.headers.get("location", "")
        assert replay.json()["status_url"] is None


async def test_idempotency_key_is_scoped_to_the_checkout_it_was_sent_with(
    db_url: str, settings_factory: Callable[..., Settings], catalog: Catalog
) -> None:
    fake = FakeProvider(ProviderName.STRIPE)
    async with running(_app(db_url, settings_factory, catalog, fake)) as client:
        headers = {"Idempotency-Key": "cart-43"}
        first = await client.post(
            "/checkout/stripe/pro", json={"email": "a@example.com"}, headers=headers
        )
        other = await client.post(
            "/checkout/stripe/enterprise", json={"email": "a@example.com"}, headers=headers
        )

        # the same key for another product is another checkout, not someone's order
        assert (first.status_code, other.status_code) == (201, 201)
        assert other.json()["order_id"] != first.json()["order_id"]
        assert await Order.all().count() == 2
        # and the raw key is not what is stored
        assert await Order.filter(idempotency_key="cart-43").count() == 0


async def test_provider_down_answers_503_and_a_retry_completes_the_same_order(
    db_url: str, settings_factory: Callable[..., Settings], catalog: Catalog
) -> None:
    fake = FakeProvider(ProviderName.STRIPE)
    async with running(_app(db_url, settings_factory, catalog, fake)) as client:
        # given the provider is unreachable
        fake.fail_create = True
        headers = {"Idempotency-Key": "cart-44"}
        body = {"email": "buyer@example.com"}
        down = await client.post("/checkout/stripe/pro", json=body, headers=headers)

        # then the buyer gets a 503 and no checkout exists that could be paid
        assert down.status_code == 503
        assert down.json()["error"] == "provider_unavailable"
        assert fake.created == []
        order = await Order.get()
        assert order.checkout_url is None

        # when the buyer retries once the provider is back
        fake.fail_create = False
        retry = await client.post("/checkout/stripe/pro", json=body, headers=headers)

        # then the same order gets its checkout, created with the order-derived key
        assert retry.status_code == 200, retry.text
        assert retry.json()["order_id"] == order.id
        assert [r.idempotency_key for r in fake.created] == [f"checkout:{order.id}"]
        assert await Order.all().count() == 1


async def test_real_stripe_outage_answers_503(
    db_url: str, settings_factory: Callable[..., Settings], catalog: Catalog
) -> None:
    harness = StripeContractHarness()
    provider = harness.build_provider()
    harness.fake.unreachable = True
    try:
        app = create_app(
            settings_factory(database_url=db_url),
            catalog=catalog,
            providers={provider.name: provider},
            run_migrations=False,
        )
        async with running(app) as client:
            resp = await client.post("/checkout/stripe/pro", json={"email": "buyer@example.com"})
            assert resp.status_code == 503, resp.text
            assert resp.json()["error"] == "provider_unavailable"
            assert harness.fake.sessions == {}
    finally:
        await harness.aclose()


async def test_bad_input_gets_clear_json_errors(
    db_url: str, settings_factory: Callable[..., Settings], catalog: Catalog
) -> None:
    fake = FakeProvider(ProviderName.STRIPE)
    async with running(_app(db_url, settings_factory, catalog, fake)) as client:
        cases = [
            ("/checkout/stripe/pro", {"email": "not-an-email"}, 422, "invalid_request"),
            ("/checkout/stripe/pro", {}, 422, "invalid_request"),
            ("/checkout/btcpay/pro", {"email": "a@example.com"}, 404, "unknown_provider"),
            ("/checkout/paypal/pro", {"email": "a@example.com"}, 404, "unknown_provider"),
            ("/checkout/stripe/nope", {"email": "a@example.com"}, 404, "unknown_product"),
        ]
        for path, body, status, code in cases:
            resp = await client.post(path, json=body)
            assert (resp.status_code, resp.json()["error"]) == (status, code), path
        malformed = await client.post(
            "/checkout/stripe/pro",
            content=b"{not json",
            headers={"content-type": "application/json"},
        )
        assert malformed.status_code == 422
        assert await Order.all().count() == 0
