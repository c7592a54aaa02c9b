from __future__ import annotations

import json
from collections.abc import Callable

from config.catalog import Catalog
from config.settings import Settings
from gateway.app import create_app
from gateway.db.models import License, Order, OrderStatus, OutboxEmail
from providers.events import ProviderName
from sandbox.provider import FakeProvider
from tests.support.app import running


async def test_checkout_then_settle_issues_one_license(
    db_url: str, settings_factory: Callable[..., Settings], catalog: Catalog
) -> None:
    # given a gateway with a fake card provider
    fake = FakeProvider(ProviderName.STRIPE)
    app = create_app(
        settings_factory(database_url=db_url),
        catalog=catalog,
        providers={ProviderName.STRIPE: fake},
        run_migrations=False,
    )
    async with running(app) as client:
        resp = await client.post("/checkout/stripe/pro", json={"email": "buyer@example.com"})
        assert resp.status_code == 201, resp.text
        order_id = resp.json()["order_id"]
        ref = fake.created[0].order_id
        assert ref == order_id
        order = await Order.get(id=order_id)
        body = json.dumps(
            {
                "events": [
                    {
                        "kind": "settled",
                        "provider_ref": order.provider_ref,
                        "order_id": order_id,
                        "dedupe_key": "evt_1",
                        "amount_minor": 999,
                        "currency": "USD",
                    }
                ]
            }
        ).encode()
        # when the same settle arrives twice
        first = await client.post("/webhooks/stripe", content=body, headers=fake.sign(body))
        second = await client.post("/webhooks/stripe", content=body, headers=fake.sign(body))
        # then one license and one email exist
        assert first.json()["events"][0]["result"] == "applied"
        assert second.json()["events"][0]["result"] == "duplicate"
        assert (await Order.get(id=order_id)).status == OrderStatus.SETTLED
        assert await License.filter(order_id=order_id).count() == 1
        assert await OutboxEmail.filter(order_id=order_id).count() == 1
