"""No 500 and no leak for any client input: ids, nesting, long fields, provider errors,
request ids, cross-site forms and checkout floods (issue 9, items 2, 3, 8, 12, 17, 19)."""

from __future__ import annotations

import logging
from collections.abc import Callable

import asyncpg
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from tortoise.exceptions import IntegrityError

from config.catalog import Catalog
from config.settings import BtcpaySettings, LimitsSettings, Settings, StripeSettings
from gateway.app import create_app
from gateway.db.models import InboxEvent, Order
from gateway.http.errors import handlers
from gateway.http.request_id import RequestIdMiddleware
from providers.base import CheckoutRequest, CheckoutSession
from providers.errors import ProviderRejected
from sandbox.provider import FakeProvider
from tests.support.app import running
from tests.support.issuer import deliver, fake_gateway, new_order
from tests.support.license import new_license
from tests.support.stripe import WEBHOOK_SECRET, session_event, sign_event

SettingsFactory = Callable[..., Settings]
LEAKY = "Invalid API Key provided: sk_test_****9876"


@pytest.mark.parametrize(
    "path",
    [
        "/orders/ord_" + "a" * 37,  # 41 characters: over the 40-character column
        "/orders/ord_%00x",  # a NUL byte: PostgreSQL refuses it in text
        "/orders/" + "x" * 5000,
        "/orders/ORD_0123456789ABCDEF0123",
    ],
)
async def test_order_status_for_an_id_not_in_our_shape_is_404(app: Starlette, path: str) -> None:
    async with running(app) as client:
        json_answer = await client.get(path + "?token=abc")
        html_answer = await client.get(path, headers={"accept": "text/html"})

    assert json_answer.status_code == 404
    assert json_answer.json()["error"] == "not_found"
    assert html_answer.status_code == 404


@pytest.mark.parametrize("order_id", ["ord_" + "b" * 60, "ord_\u0000abc", "x" * 300])
async def test_signed_event_with_a_foreign_order_id_is_answered_2xx_not_500(
    app: Starlette, fake: FakeProvider, order_id: str
) -> None:
    async with running(app) as client:
        event = {
            "kind": "settled",
            "provider_ref": "cs_foreign",
            "order_id": order_id,
            "dedupe_key": "evt_foreign",
            "amount_minor": 999,
            "currency": "USD",
        }
        resp = await deliver(client, fake, event)

        assert resp.status_code == 200, resp.text
        assert resp.json()["events"][0]["result"] == "ignored"
        # not ours: answered before the database is asked, so nothing is stored
        assert not await InboxEvent.exists(dedupe_key="evt_foreign")


async def test_deeply_nested_json_on_checkout_is_400_not_500(
    app: Starlette, fake: FakeProvider
) -> None:
    body = b"[" * 100_000 + b"]" * 100_000
    async with running(app) as client:
        resp = await client.post(
            "/checkout/stripe/pro", content=body, headers={"content-type": "application/json"}
        )
        # within the default 16 KiB cap too
        small = await client.post(
            "/checkout/stripe/pro",
            content=b'{"email":' + b"[" * 8000 + b"]" * 8000 + b"}",
            headers={"content-type": "application/json"},
        )

    assert resp.status_code == 413  # over the body cap: refused before parsing
    assert small.status_code == 400, small.text
    assert small.json()["error"] == "bad_request"
    assert fake.created == []


async def test_overlong_email_is_refused_before_validation(
    app: Starlette, fake: FakeProvider
) -> None:
    async with running(app) as client:
        resp = await client.post("/checkout/stripe/pro", json={"email": "a" * 10_000 + "@x.io"})
        assert await Order.all().count() == 0

    assert resp.status_code == 422
    assert resp.json()["field"] == "email"
    assert "at most 320" in resp.json()["detail"]
    assert fake.created == []


class LeakyProvider(FakeProvider):
    """Refuses every checkout with the kind of text Stripe sends for a revoked key."""

    async def create_checkout(self, req: CheckoutRequest) -> CheckoutSession:
        raise ProviderRejected(LEAKY)


async def test_provider_error_text_is_logged_not_answered_and_has_a_request_id(
    db_url: str,
    settings_factory: SettingsFactory,
    catalog: Catalog,
    caplog: pytest.LogCaptureFixture,
) -> None:
    app, _ = fake_gateway(db_url, settings_factory, catalog, fake=LeakyProvider())
    caplog.set_level(logging.INFO)
    async with running(app) as client:
        resp = await client.post("/checkout/stripe/pro", json={"email": "buyer@example.com"})

    assert resp.status_code == 502
    body = resp.json()
    assert "sk_" not in resp.text
    assert "API Key" not in resp.text
    assert body["error"] == "provider_rejected"
    assert body["request_id"] == resp.headers["x-request-id"]
    # the operator still has the detail
    assert any(LEAKY in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("incoming", "kept"),
    [("req-0123456789abcdef", True), ("short", False), ("bad id\r\nx: y", False), (None, False)],
)
async def test_request_id_is_echoed_when_sane_and_minted_otherwise(
    incoming: str | None, kept: bool
) -> None:
    async def ok(_: Request) -> Response:
        return Response("ok")

    app = Starlette(
        routes=[Route("/", ok)],
        exception_handlers=handlers(),
        middleware=[Middleware(RequestIdMiddleware)],
    )
    headers = {"x-request-id": incoming} if incoming is not None else {}
    async with running(app) as client:
        resp = await client.get("/", headers=headers)

    rid = resp.headers["x-request-id"]
    assert (rid == incoming) is kept
    assert 8 <= len(rid) <= 64
    assert rid.isprintable()


async def test_unique_race_is_409_and_a_cut_connection_is_503_never_500() -> None:
    async def race(_: Request) -> Response:
        raise IntegrityError("duplicate key value violates unique constraint")

    async def cut(_: Request) -> Response:
        raise asyncpg.exceptions.InternalClientError(
            "cannot switch to state 12; another operation (2) is in progress"
        )

    app = Starlette(
        routes=[Route("/race", race), Route("/cut", cut)],
        exception_handlers=handlers(),
        middleware=[Middleware(RequestIdMiddleware)],
    )
    async with running(app) as client:
        raced = await client.get("/race")
        lost = await client.get("/cut")

    assert (raced.status_code, raced.json()["error"]) == (409, "conflict")
    assert (lost.status_code, lost.json()["error"]) == (503, "database_unavailable")
    assert lost.json()["request_id"] == lost.headers["x-request-id"]
    assert "another operation" not in lost.text


FORM = {"content-type": "application/x-www-form-urlencoded"}


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"origin": "https://evil.example"}, 403),
        ({"origin": "null"}, 403),
        ({"referer": "https://evil.example/page.html"}, 403),
        ({"origin": "https://shop.example"}, 303),
        ({"origin": "HTTPS://SHOP.EXAMPLE:443"}, 303),
        ({"origin": "http://gateway.test"}, 303),  # the gateway's own pages
        ({"referer": "https://shop.example/buy?x=1"}, 303),
        ({}, 303),  # no browser: neither header; not a cross-site form
    ],
)
async def test_form_checkout_from_a_foreign_origin_is_403_and_creates_nothing(
    db_url: str,
    settings_factory: SettingsFactory,
    catalog: Catalog,
    headers: dict[str, str],
    status: int,
) -> None:
    app, fake = fake_gateway(
        db_url, settings_factory, catalog, allowed_origins=["https://shop.example"]
    )
    async with running(app) as client:
        resp = await client.post(
            "/checkout/stripe/pro", content=b"email=buyer%40example.com", headers=FORM | headers
        )
        orders = await Order.all().count()

    assert resp.status_code == status, resp.text
    assert len(fake.created) == orders == (1 if status == 303 else 0)


async def test_json_checkout_is_origin_checked_like_every_other_body(
    db_url: str, settings_factory: SettingsFactory, catalog: Catalog
) -> None:
    # One rule whatever the content type (issue 16): a foreign Origin changes nothing, the
    # seller's site (which CORS lets call) and a program that names no origin may.
    app, fake = fake_gateway(
        db_url, settings_factory, catalog, allowed_origins=["https://shop.example"]
    )
    body = {"email": "buyer@example.com"}
    async with running(app) as client:
        foreign = await client.post(
            "/checkout/stripe/pro", json=body, headers={"origin": "https://elsewhere.example"}
        )
        seller = await client.post(
            "/checkout/stripe/pro", json=body, headers={"origin": "https://shop.example"}
        )
        program = await client.post("/checkout/stripe/pro", json=body)
        orders = await Order.all().count()

    assert (foreign.status_code, foreign.json()["error"]) == (403, "origin_not_allowed")
    assert (seller.status_code, program.status_code) == (201, 201)
    assert orders == len(fake.created) == 2


async def test_checkout_flood_is_rate_limited_per_ip_and_per_email_with_retry_after(
    db_url: str, settings_factory: SettingsFactory, catalog: Catalog
) -> None:
    app, fake = fake_gateway(
        db_url,
        settings_factory,
        catalog,
        limits=LimitsSettings(checkout_per_ip="4/minute", checkout_per_email="2/minute"),
    )
    async with running(app) as client:
        same_email = [
            await client.post("/checkout/stripe/pro", json={"email": "a@example.com"})
            for _ in range(3)
        ]
        other_emails = [
            await client.post("/checkout/stripe/pro", json={"email": f"b{n}@example.com"})
            for n in range(3)
        ]

    assert [r.status_code for r in same_email] == [201, 201, 429]
    # the IP budget (4) was spent by 3 + 1 requests, whatever their emails
    assert [r.status_code for r in other_emails] == [201, 429, 429]
    refused = same_email[2]
    assert refused.json()["error"] == "rate_limited"
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert len(fake.created) == 3


async def test_existing_order_lookup_still_works(app: Starlette, catalog: Catalog) -> None:
    async with running(app) as client:
        order = await new_order(catalog)
        resp = await client.get(f"/orders/{order.id}?token={order.status_token}")

    assert resp.status_code == 200
    assert resp.json()["order_id"] == order.id


@pytest.mark.parametrize(
    "reference",
    ["ord_\u0000" + "0" * 19, "ord_" + "c" * 60, "plink_someone_elses_payment_link"],
)
async def test_signed_stripe_session_with_a_foreign_reference_is_200_never_5xx(
    db_url: str, settings_factory: SettingsFactory, catalog: Catalog, reference: str
) -> None:
    # given the real Stripe provider (a Payment Link of the same account can carry any
    # client_reference_id, and the payload is correctly signed)
    settings = settings_factory(
        database_url=db_url,
        stripe=StripeSettings(
            enabled=True,
            secret_key="sk_test_foreign",
            webhook_secret=WEBHOOK_SECRET,
            api_base="http://127.0.0.1:9",
        ),
        btcpay=BtcpaySettings(enabled=False),
    )
    app = create_app(settings, catalog=catalog, run_migrations=False, run_mailer=False)
    async with running(app) as client:
        order = await new_order(catalog)
        event = session_event(order, "evt_foreign_reference", "checkout.session.completed")
        event["data"]["object"]["client_reference_id"] = reference
        event["data"]["object"]["metadata"] = {"order_id": reference}
        body, headers = sign_event(event)

        # when it is delivered
        resp = await client.post("/webhooks/stripe", content=body, headers=headers)

        # then it is answered 2xx and nothing is issued for our order
        assert resp.status_code == 200, resp.text
        assert (await Order.get(id=order.id)).status == "created"


# A JSON `\ud800` escape is valid JSON syntax but decodes to a lone surrogate, which no
# database driver can encode: it must be a 4xx at the door, never a 500 or a 503.
LONE_SURROGATE_BODIES = [
    '{"key": "KEY", "fingerprint": "\\ud800"}',
    '{"key": "KEY", "fingerprint": "pc-1", "label": "\\udfff"}',
    '{"key": "\\ud800"}',
    '{"email": "a\\ud800@example.com"}',
]


@pytest.mark.parametrize(
    "path",
    [
        "/licenses/validate",
        "/licenses/activate",
        "/licenses/deactivate",
        "/licenses/token",
        "/checkout/stripe/pro",
        "/licenses/recover",
    ],
)
async def test_json_with_a_lone_surrogate_is_400_on_every_json_route(
    app: Starlette, catalog: Catalog, path: str
) -> None:
    async with running(app) as client:
        license_ = await new_license(catalog)
        for body in LONE_SURROGATE_BODIES:
            answer = await client.post(
                path,
                content=body.replace("KEY", license_.key).encode(),
                headers={"content-type": "application/json"},
            )
            assert answer.status_code in (400, 404, 422), (body, answer.text)
