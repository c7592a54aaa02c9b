"""`GET /orders/{order_id}?token=...`: JSON and HTML, and no way to probe order ids."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from config.catalog import Catalog
from config.settings import Settings
from gateway.db.models import License, Order
from tests.conftest import running
from tests.support.issuer import deliver, event, fake_gateway, new_order

SettingsFactory = Callable[..., Settings]
BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


@pytest.mark.parametrize("accept", ["application/json", BROWSER])
async def test_wrong_missing_token_and_unknown_order_get_the_identical_404(
    db_url: str, settings_factory: SettingsFactory, catalog: Catalog, accept: str
) -> None:
    app, _ = fake_gateway(db_url, settings_factory, catalog)
    async with running(app) as client:
        order = await new_order(catalog)
        headers = {"accept": accept}

        wrong = await client.get(f"/orders/{order.id}?token=nope", headers=headers)
        missing = await client.get(f"/orders/{order.id}", headers=headers)
        unknown = await client.get(
            f"/orders/ord_unknown?token={order.status_token}", headers=headers
        )
        # a token of another order opens nothing either
        other = await new_order(catalog)
        crossed = await client.get(f"/orders/{order.id}?token={other.status_token}")

        for resp in (wrong, missing, unknown):
            assert resp.status_code == 404
            assert resp.content == unknown.content
            assert resp.headers["content-type"] == unknown.headers["content-type"]
        assert order.id not in wrong.text
        assert crossed.status_code == 404


async def test_before_settlement_the_status_shows_no_license(
    db_url: str, settings_factory: SettingsFactory, catalog: Catalog
) -> None:
    app, fake = fake_gateway(db_url, settings_factory, catalog)
    async with running(app) as client:
        order = await new_order(catalog)
        url = f"/orders/{order.id}?token={order.status_token}"

        created = await client.get(url)
        await deliver(client, fake, event(order, "pending"))
        pending = await client.get(url)

        assert created.status_code == 200
        doc = created.json()
        assert doc == {
            "order_id": order.id,
            "status": "created",
            "product": {"id": "pro", "name": "Local AI Studio Pro"},
            "provider": "stripe",
            "amount": "9.99",
            "currency": "USD",
            "created_at": doc["created_at"],
            "license": None,
        }
        assert doc["created_at"].startswith(str(order.created_at.year))
        assert pending.json()["status"] == "pending"
        assert pending.json()["license"] is None
        assert pending.headers["cache-control"] == "no-store"


async def test_after_settlement_the_status_shows_the_license(
    db_url: str, settings_factory: SettingsFactory, catalog: Catalog
) -> None:
    app, fake = fake_gateway(db_url, settings_factory, catalog)
    async with running(app) as client:
        order = await new_order(catalog)
        await deliver(client, fake, event(order))
        lic = await License.get(order_id=order.id)

        resp = await client.get(f"/orders/{order.id}?token={order.status_token}")

        assert resp.json()["status"] == "settled"
        assert resp.json()["license"] == {
            "key": lic.key,
            "tier": "pro",
            "addons": ["advanced-models"],
            "seat_limit": 3,
            "status": "active",
        }


async def test_after_reversal_the_status_shows_the_license_revoked(
    db_url: str, settings_factory: SettingsFactory, catalog: Catalog
) -> None:
    app, fake = fake_gateway(db_url, settings_factory, catalog)
    async with running(app) as client:
        order = await new_order(catalog)
        await deliver(client, fake, event(order))
        await deliver(client, fake, event(order, "reversed"))

        resp = await client.get(f"/orders/{order.id}?token={order.status_token}")
        page = await client.get(
            f"/orders/{order.id}?token={order.status_token}", headers={"accept": BROWSER}
        )

        assert resp.json()["status"] == "reversed"
        assert resp.json()["license"]["status"] == "revoked"
        assert "revoked" in page.text
        assert "Payment refunded, license revoked" in page.text


async def test_html_page_polls_while_waiting_and_stops_once_settled(
    db_url: str, settings_factory: SettingsFactory, catalog: Catalog
) -> None:
    app, fake = fake_gateway(db_url, settings_factory, catalog)
    async with running(app) as client:
        order = await new_order(catalog)
        url = f"/orders/{order.id}?token={order.status_token}"
        browser = {"accept": BROWSER}

        waiting = await client.get(url, headers=browser)
        await deliver(client, fake, event(order))
        settled = await client.get(url, headers=browser)
        key = (await License.get(order_id=order.id)).key

        assert waiting.status_code == 200
        assert waiting.headers["content-type"].startswith("text/html")
        # the static poller (gateway/pages/static/status.js) runs while data-poll="1"
        assert 'data-poll="1"' in waiting.text
        assert "Waiting for your payment" in waiting.text
        assert 'data-poll="email"' in settled.text  # final; only the mail line can change
        assert key in settled.text
        assert "Local AI Studio Pro" in settled.text
        assert "9.99 USD" in settled.text
        # only our own static assets: nothing from another host, nothing inline
        for marker in ("https://", "http://", "<style", "style=", "<script>"):
            assert marker not in settled.text


async def test_html_page_escapes_what_it_shows(
    db_url: str, settings_factory: SettingsFactory, catalog: Catalog
) -> None:
    app, _ = fake_gateway(db_url, settings_factory, catalog)
    async with running(app) as client:
        order = await new_order(catalog)
        await Order.filter(id=order.id).update(product_id="<b>gone</b>")

        page = await client.get(
            f"/orders/{order.id}?token={order.status_token}", headers={"accept": BROWSER}
        )

        assert "<b>gone</b>" not in page.text
        assert "&lt;b&gt;gone&lt;/b&gt;" in page.text
