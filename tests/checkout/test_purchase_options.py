"""GET /purchase-options/{product}: which providers show, in what order, with what text;
and JSON errors on every path (unknown route, wrong method, bad checkout input)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette

from config.catalog import Catalog
from config.settings import Settings
from gateway.app import create_app
from providers.base import PaymentProvider
from providers.events import ProviderName
from sandbox.provider import FakeProvider
from tests.support import dbutil
from tests.support.app import running

BTCPAY = ProviderName.BTCPAY
STRIPE = ProviderName.STRIPE


@pytest.fixture
def make_app(
    tmp_path: Path,
    sqlite_template: Path,
    settings_factory: Callable[..., Settings],
    catalog: Catalog,
) -> Callable[..., Starlette]:
    db_url = dbutil.sqlite_copy(sqlite_template, tmp_path / "gateway.sqlite3")

    def make(providers: dict[ProviderName, PaymentProvider] | None, **overrides: Any) -> Starlette:
        settings = settings_factory(database_url=db_url, **overrides)
        return create_app(
            settings,
            catalog=catalog,
            providers=providers,
            run_migrations=False,
            run_mailer=False,
        )

    return make


def _fakes(*names: ProviderName) -> dict[ProviderName, PaymentProvider]:
    return {name: FakeProvider(name) for name in names}


@pytest.mark.parametrize(
    ("enabled", "shown"),
    [
        ((), []),
        ((BTCPAY,), ["btcpay"]),
        ((STRIPE,), ["stripe"]),
        ((BTCPAY, STRIPE), ["btcpay", "stripe"]),
        ((STRIPE, BTCPAY), ["btcpay", "stripe"]),  # injection order does not matter
    ],
)
async def test_each_provider_combination_shows_exactly_the_enabled_ones(
    make_app: Callable[..., Starlette], enabled: tuple[ProviderName, ...], shown: list[str]
) -> None:
    async with running(make_app(_fakes(*enabled))) as client:
        resp = await client.get("/purchase-options/pro")

    assert resp.status_code == 200
    assert [option["provider"] for option in resp.json()["options"]] == shown


async def test_configured_order_decides_the_listing(make_app: Callable[..., Starlette]) -> None:
    # given the operator puts the card first (defaults put bitcoin first)
    app = make_app(_fakes(BTCPAY, STRIPE), stripe={"order": 1}, btcpay={"order": 5})

    async with running(app) as client:
        resp = await client.get("/purchase-options/pro")

    assert [option["provider"] for option in resp.json()["options"]] == ["stripe", "btcpay"]


async def test_labels_and_hints_come_from_settings(make_app: Callable[..., Starlette]) -> None:
    app = make_app(
        _fakes(BTCPAY, STRIPE),
        stripe={"label": "Card", "fee_hint": "3%", "speed_hint": "now"},
        btcpay={"label": "Sats", "fee_hint": "0%", "speed_hint": "later"},
    )

    async with running(app) as client:
        options = (await client.get("/purchase-options/enterprise")).json()["options"]

    assert [(o["label"], o["fee_hint"], o["speed_hint"]) for o in options] == [
        ("Sats", "0%", "later"),
        ("Card", "3%", "now"),
    ]


async def test_response_shape_has_decimal_price_minor_units_and_checkout_urls(
    make_app: Callable[..., Starlette],
) -> None:
    async with running(make_app(_fakes(BTCPAY, STRIPE))) as client:
        resp = await client.get("/purchase-options/pro")

    assert resp.headers["content-type"] == "application/json"
    assert resp.json() == {
        "product": {
            "id": "pro",
            "name": "Local AI Studio Pro",
            "description": "Local AI Studio Pro license",
            "price": "9.99",
            "currency": "USD",
            "amount_minor": 999,
            "tier": "pro",
            "addons": ["advanced-models"],
            "seats": 3,
        },
        "options": [
            {
                "provider": "btcpay",
                "label": "Pay with Bitcoin",
                "fee_hint": "No processor fees",
                "speed_hint": "10-60 min on-chain, instant on Lightning",
                "checkout_url": "http://gateway.test/checkout/btcpay/pro",
                "method": "POST",
            },
            {
                "provider": "stripe",
                "label": "Pay with Card",
                "fee_hint": "2.9% + 30¢",
                "speed_hint": "instant",
                "checkout_url": "http://gateway.test/checkout/stripe/pro",
                "method": "POST",
            },
        ],
    }


async def test_checkout_url_is_a_working_post_checkout_route(
    make_app: Callable[..., Starlette],
) -> None:
    fake = FakeProvider(STRIPE)
    async with running(make_app({STRIPE: fake})) as client:
        option = (await client.get("/purchase-options/enterprise")).json()["options"][0]
        resp = await client.request(
            option["method"], option["checkout_url"], json={"email": "buyer@example.com"}
        )

    assert resp.status_code == 201, resp.text
    assert fake.created[0].product_id == "enterprise"
    assert fake.created[0].amount_minor == 3999


async def test_no_provider_gives_200_with_empty_options_and_detail(
    make_app: Callable[..., Starlette],
) -> None:
    async with running(make_app({})) as client:
        resp = await client.get("/purchase-options/pro")

    assert resp.status_code == 200
    body = resp.json()
    assert body["options"] == []
    assert body["detail"] == "no payment provider is enabled"
    assert body["product"]["id"] == "pro"


async def test_settings_decide_providers_when_none_are_injected(
    make_app: Callable[..., Starlette],
) -> None:
    # given: no secrets anywhere, so "auto" leaves both off
    async with running(make_app(None)) as client:
        resp = await client.get("/purchase-options/pro")

    assert resp.json()["options"] == []


async def test_settings_with_secrets_build_both_real_providers_in_configured_order(
    make_app: Callable[..., Starlette],
) -> None:
    app = make_app(
        None,
        stripe={"secret_key": "sk_test_x", "webhook_secret": "whsec_x", "order": 1},
        btcpay={
            "url": "https://btcpay.invalid",
            "store_id": "store",
            "api_key": "key",
            "webhook_secret": "secret",
            "order": 2,
        },
    )
    async with running(app) as client:
        resp = await client.get("/purchase-options/pro")

    assert [o["provider"] for o in resp.json()["options"]] == ["stripe", "btcpay"]


async def test_settings_with_one_provider_disabled_lists_only_the_other(
    make_app: Callable[..., Starlette],
) -> None:
    app = make_app(
        None,
        stripe={"secret_key": "sk_test_x", "webhook_secret": "whsec_x", "enabled": False},
        btcpay={
            "url": "https://btcpay.invalid",
            "store_id": "store",
            "api_key": "key",
            "webhook_secret": "secret",
        },
    )
    async with running(app) as client:
        resp = await client.get("/purchase-options/pro")

    assert [o["provider"] for o in resp.json()["options"]] == ["btcpay"]


async def test_unknown_product_is_404_json(make_app: Callable[..., Starlette]) -> None:
    async with running(make_app(_fakes(STRIPE))) as client:
        resp = await client.get("/purchase-options/nope")

    assert resp.status_code == 404
    assert resp.headers["content-type"] == "application/json"
    assert resp.json() == {"error": "unknown_product", "detail": "no such product"}


async def test_unknown_route_is_404_json(make_app: Callable[..., Starlette]) -> None:
    async with running(make_app({})) as client:
        resp = await client.get("/no/such/route")

    assert resp.status_code == 404
    assert resp.json() == {"error": "not_found", "detail": "Not Found"}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/checkout/stripe/pro"),
        ("POST", "/purchase-options/pro"),
        ("DELETE", "/healthz"),
        ("GET", "/webhooks/stripe"),
    ],
)
async def test_wrong_method_is_405_json(
    make_app: Callable[..., Starlette], method: str, path: str
) -> None:
    async with running(make_app(_fakes(STRIPE))) as client:
        resp = await client.request(method, path)

    assert resp.status_code == 405
    assert resp.json()["error"] == "method_not_allowed"
    assert "detail" in resp.json()


@pytest.mark.parametrize("email", ["not-an-email", "", "a@", "   "])
async def test_checkout_with_invalid_email_is_422_naming_the_field(
    make_app: Callable[..., Starlette], email: str
) -> None:
    fake = FakeProvider(STRIPE)
    async with running(make_app({STRIPE: fake})) as client:
        resp = await client.post("/checkout/stripe/pro", json={"email": email})

    assert resp.status_code == 422
    body = resp.json()
    assert (body["error"], body["field"]) == ("invalid_request", "email")
    assert body["detail"].startswith("email: ")
    assert fake.created == []


async def test_checkout_without_email_is_422_naming_the_field(
    make_app: Callable[..., Starlette],
) -> None:
    async with running(make_app(_fakes(STRIPE))) as client:
        resp = await client.post("/checkout/stripe/pro", json={"mail": "x@example.com"})

    assert resp.status_code == 422
    assert resp.json()["field"] == "email"


async def test_checkout_with_malformed_json_is_422(make_app: Callable[..., Starlette]) -> None:
    async with running(make_app(_fakes(STRIPE))) as client:
        resp = await client.post(
            "/checkout/stripe/pro",
            content=b'{"email": ',
            headers={"content-type": "application/json"},
        )

    assert resp.status_code == 422
    assert (resp.json()["error"], resp.json()["field"]) == ("invalid_request", "body")


@pytest.mark.parametrize("provider", ["paypal", "btcpay"])
async def test_checkout_with_unknown_or_disabled_provider_is_404(
    make_app: Callable[..., Starlette], provider: str
) -> None:
    async with running(make_app(_fakes(STRIPE))) as client:
        resp = await client.post(f"/checkout/{provider}/pro", json={"email": "b@example.com"})

    assert resp.status_code == 404
    assert resp.json()["error"] == "unknown_provider"
    assert provider in resp.json()["detail"]


async def test_checkout_for_unknown_product_is_404(make_app: Callable[..., Starlette]) -> None:
    async with running(make_app(_fakes(STRIPE))) as client:
        resp = await client.post("/checkout/stripe/nope", json={"email": "b@example.com"})

    assert resp.status_code == 404
    assert resp.json() == {"error": "unknown_product", "detail": "no such product"}
