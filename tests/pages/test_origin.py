"""The buyer forms under the one Origin rule (issue 16), on SQLite and PostgreSQL: the
chooser accepts its own form from every spelling of the gateway's address, and a truly
foreign post gets a page that says where to go (the public URL), not a resubmit, with one
warning for the operator naming the origin and the setting that would allow it."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable

import pytest

from config.catalog import Catalog
from config.settings import Settings
from gateway.db.models import Order, OutboxEmail
from tests.support.app import running
from tests.support.issuer import BUYER, deliver, event, fake_gateway, new_order

SettingsFactory = Callable[..., Settings]
PUBLIC = "http://127.0.0.1:8000"
CHOICE = {"email": "buyer@example.com", "provider": "stripe"}


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.parametrize("origin", [PUBLIC, "http://localhost:8000", "http://[::1]:8000"])
async def test_the_chooser_accepts_its_own_form_from_every_loopback_spelling(
    db_url: str, settings_factory: SettingsFactory, catalog: Catalog, origin: str
) -> None:
    app, fake = fake_gateway(db_url, settings_factory, catalog, public_url=PUBLIC)
    async with running(app) as client:
        resp = await client.post("/buy/pro", data=CHOICE, headers={"origin": origin})
        order = await Order.get()

    assert resp.status_code == 303, resp.text
    assert resp.headers["location"] == order.checkout_url
    assert len(fake.created) == 1


async def test_the_chooser_accepts_a_www_alias_of_the_public_url(
    db_url: str, settings_factory: SettingsFactory, catalog: Catalog
) -> None:
    app, fake = fake_gateway(
        db_url,
        settings_factory,
        catalog,
        public_url="https://shop.example",
        origin_aliases=["https://www.shop.example"],
    )
    async with running(app) as client:
        www = await client.post(
            "/buy/pro", data=CHOICE, headers={"origin": "https://www.shop.example"}
        )

    assert www.status_code == 303, www.text
    assert len(fake.created) == 1


@pytest.mark.parametrize(
    "origin", ["http://localhost:8001", "https://evil.example", "http://127.0.0.1.nip.io:8000"]
)
async def test_a_foreign_chooser_post_says_where_to_order_and_warns_once(
    db_url: str,
    settings_factory: SettingsFactory,
    catalog: Catalog,
    caplog: pytest.LogCaptureFixture,
    origin: str,
) -> None:
    app, fake = fake_gateway(db_url, settings_factory, catalog, public_url=PUBLIC)
    async with running(app) as client:
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            resp = await client.post("/buy/pro", data=CHOICE, headers={"origin": origin})
        orders = await Order.all().count()

    assert resp.status_code == 403
    assert resp.headers["content-type"].startswith("text/html")
    assert f"from another website ({origin})" in resp.text
    assert f"Please open this shop at {PUBLIC}" in resp.text
    # the way on is our own chooser at the public URL: never the same refused post again
    assert re.findall(r'<a class="button" href="([^"]+)"', resp.text) == [f"{PUBLIC}/buy/pro"]
    assert "<form" not in resp.text
    assert orders == len(fake.created) == 0
    [warning] = _warnings(caplog)
    assert repr(origin) in warning
    assert "GATEWAY_ORIGIN_ALIASES" in warning


async def test_a_foreign_lost_key_post_links_to_the_form_at_the_public_url(
    db_url: str,
    settings_factory: SettingsFactory,
    catalog: Catalog,
    caplog: pytest.LogCaptureFixture,
) -> None:
    app, fake = fake_gateway(db_url, settings_factory, catalog, public_url=PUBLIC)
    async with running(app) as client:
        await deliver(client, fake, event(await new_order(catalog)))
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            foreign = await client.post(
                "/licenses/recover", data={"email": BUYER}, headers={"origin": "http://localhost:9"}
            )
        refused = await OutboxEmail.filter(kind__startswith="recover-").count()
        twin = await client.post(
            "/licenses/recover", data={"email": BUYER}, headers={"origin": "http://localhost:8000"}
        )
        queued = await OutboxEmail.filter(kind__startswith="recover-").count()

    assert foreign.status_code == 403
    links = re.findall(r'<a class="button" href="([^"]+)"', foreign.text)
    assert links == [f"{PUBLIC}/licenses/recover"]
    assert len(_warnings(caplog)) == 1
    assert refused == 0
    assert twin.status_code == 200
    assert queued == 1
