"""The license API under the one Origin rule (issue 16), on SQLite and PostgreSQL: a post
that names a foreign origin changes nothing, whatever its content type; the buyer's app,
which names none, is answered as before, with or without a Content-Type."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from config.catalog import Catalog
from config.settings import Settings
from gateway.db.models import Activation
from tests.support.app import running
from tests.support.issuer import fake_gateway
from tests.support.license import new_license

SettingsFactory = Callable[..., Settings]
EVIL = "https://evil.example"


@pytest.mark.parametrize(
    "headers",
    [
        {"origin": EVIL},  # a no-cors fetch of a Blob: no Content-Type
        {"origin": EVIL, "content-type": "text/plain"},
        {"origin": EVIL, "content-type": "application/json"},
        {"origin": "null"},
        {"referer": f"{EVIL}/page"},
    ],
)
async def test_a_foreign_origin_can_neither_take_nor_free_a_seat(
    db_url: str, settings_factory: SettingsFactory, catalog: Catalog, headers: dict[str, str]
) -> None:
    app, _ = fake_gateway(db_url, settings_factory, catalog)
    async with running(app) as client:
        lic = await new_license(catalog)
        body = json.dumps({"key": lic.key, "fingerprint": "m1"}).encode()
        answers = {
            what: await client.post(f"/licenses/{what}", content=body, headers=headers)
            for what in ("activate", "validate", "token", "deactivate")
        }
        seats = await Activation.all().count()

    for what, resp in answers.items():
        assert resp.status_code == 403, (what, resp.text)
        assert resp.json()["error"] == "origin_not_allowed"
    assert seats == 0


@pytest.mark.parametrize(
    "headers", [{}, {"content-type": "text/plain"}, {"origin": "http://gateway.test"}]
)
async def test_the_buyers_app_activates_as_before(
    db_url: str, settings_factory: SettingsFactory, catalog: Catalog, headers: dict[str, str]
) -> None:
    app, _ = fake_gateway(db_url, settings_factory, catalog)
    async with running(app) as client:
        lic = await new_license(catalog)
        body = json.dumps({"key": lic.key, "fingerprint": "m1"}).encode()
        activated = await client.post("/licenses/activate", content=body, headers=headers)
        seats = await Activation.all().count()

    assert activated.status_code == 201, activated.text
    assert seats == 1
