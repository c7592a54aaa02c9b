"""The checkout under the one Origin rule (issue 16), on SQLite and PostgreSQL: what a
cross-site page can send unasked (a `no-cors` Blob, `text/plain`) creates no order, the JSON
checkout takes only `application/json` (415 otherwise), and the gateway's own loopback
spellings and aliases are its own."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from config.catalog import Catalog
from config.settings import Settings
from gateway.db.models import Order
from tests.support.app import running
from tests.support.issuer import fake_gateway

SettingsFactory = Callable[..., Settings]
BODY = b'{"email": "buyer@example.com"}'
FORM = {"content-type": "application/x-www-form-urlencoded"}
EVIL = "https://evil.example"


@pytest.mark.parametrize(
    "headers",
    [
        {"origin": EVIL},  # fetch(url, {mode: "no-cors", body: new Blob([json])})
        {"origin": EVIL, "content-type": "text/plain"},
        {"origin": EVIL, "content-type": "application/json"},  # only after a preflight
        {"referer": f"{EVIL}/page.html"},
    ],
)
async def test_a_cross_site_post_of_any_content_type_creates_no_order(
    db_url: str, settings_factory: SettingsFactory, catalog: Catalog, headers: dict[str, str]
) -> None:
    app, fake = fake_gateway(db_url, settings_factory, catalog)
    async with running(app) as client:
        resp = await client.post("/checkout/stripe/pro", content=BODY, headers=headers)
        orders = await Order.all().count()

    assert resp.status_code == 403, resp.text
    assert resp.json()["error"] == "origin_not_allowed"
    assert orders == len(fake.created) == 0


@pytest.mark.parametrize(
    "content_type", [None, "text/plain", "text/plain;charset=UTF-8", "application/octet-stream"]
)
async def test_the_json_checkout_refuses_a_body_that_is_not_application_json(
    db_url: str, settings_factory: SettingsFactory, catalog: Catalog, content_type: str | None
) -> None:
    app, fake = fake_gateway(db_url, settings_factory, catalog)
    headers = {"content-type": content_type} if content_type else {}
    async with running(app) as client:
        resp = await client.post("/checkout/stripe/pro", content=BODY, headers=headers)
        json_utf8 = await client.post(
            "/checkout/stripe/pro",
            content=BODY,
            headers={"content-type": "Application/JSON; charset=utf-8"},
        )
        orders = await Order.all().count()

    assert resp.status_code == 415, resp.text
    assert resp.headers["content-type"] == "application/json"
    assert resp.json()["error"] == "unsupported_media_type"
    assert "application/json" in resp.json()["detail"]
    assert json_utf8.status_code == 201, json_utf8.text
    assert orders == len(fake.created) == 1


@pytest.mark.parametrize("origin", ["http://localhost:8000", "http://[::1]:8000"])
async def test_the_form_checkout_accepts_the_loopback_twins_of_the_public_url(
    db_url: str, settings_factory: SettingsFactory, catalog: Catalog, origin: str
) -> None:
    app, fake = fake_gateway(db_url, settings_factory, catalog, public_url="http://127.0.0.1:8000")
    form = b"email=buyer%40example.com"
    async with running(app) as client:
        twin = await client.post(
            "/checkout/stripe/pro", content=form, headers=FORM | {"origin": origin}
        )
        other_port = await client.post(
            "/checkout/stripe/pro", content=form, headers=FORM | {"origin": "http://localhost:8001"}
        )
        orders = await Order.all().count()

    assert twin.status_code == 303, twin.text
    assert other_port.status_code == 403
    assert orders == len(fake.created) == 1


async def test_an_alias_is_accepted_as_the_gateway_itself(
    db_url: str, settings_factory: SettingsFactory, catalog: Catalog
) -> None:
    app, fake = fake_gateway(
        db_url,
        settings_factory,
        catalog,
        public_url="https://pay.example.com",
        origin_aliases=["https://www.pay.example.com"],
    )
    async with running(app) as client:
        www = await client.post(
            "/checkout/stripe/pro",
            content=b"email=buyer%40example.com",
            headers=FORM | {"origin": "https://www.pay.example.com"},
        )

    assert www.status_code == 303, www.text
    assert len(fake.created) == 1
