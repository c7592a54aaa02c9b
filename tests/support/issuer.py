"""Shared helpers for the license-issuer tests: a gateway on a fake provider, orders, events."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
from starlette.applications import Starlette

from config.catalog import Catalog
from config.settings import Settings
from gateway.app import create_app
from gateway.db.models import Order, OrderStatus
from gateway.payments.apply import Applier
from providers.events import PaymentSettled, ProviderName
from sandbox.provider import FakeProvider

BUYER = "buyer@example.com"


def fake_gateway(
    db_url: str,
    settings_factory: Callable[..., Settings],
    catalog: Catalog,
    *,
    fake: FakeProvider | None = None,
    **settings: Any,
) -> tuple[Starlette, FakeProvider]:
    """An app on `db_url` with a fake Stripe-named provider and the mailer loop off."""
    fake = fake or FakeProvider(ProviderName.STRIPE)
    app = create_app(
        settings_factory(database_url=db_url, **settings),
        catalog=catalog,
        providers={fake.name: fake},
        run_migrations=False,
        run_mailer=False,
    )
    return app, fake


async def new_order(
    catalog: Catalog,
    *,
    product: str = "pro",
    provider: ProviderName = ProviderName.STRIPE,
    status: OrderStatus = OrderStatus.CREATED,
) -> Order:
    """An order as checkout leaves it: committed, with the provider's checkout reference."""
    item = catalog.get(product)
    assert item is not None
    order_id = "ord_" + secrets.token_hex(10)
    return await Order.create(
        id=order_id,
        product_id=item.id,
        amount_minor=item.amount_minor,
        currency=item.currency,
        provider=provider.value,
        provider_ref=f"ref_{order_id}",
        buyer_email=BUYER,
        status=status,
        status_token=secrets.token_urlsafe(24),
        checkout_url=f"https://pay.invalid/{order_id}",
    )


def event(
    order: Order,
    kind: str = "settled",
    dedupe_key: str | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """One FakeProvider event for `order`; a settlement pays the order's exact amount."""
    item: dict[str, Any] = {
        "kind": kind,
        "provider_ref": order.provider_ref,
        "order_id": order.id,
        "dedupe_key": dedupe_key or f"evt_{kind}_{order.id}",
    }
    if kind == "settled":
        item |= {"amount_minor": order.amount_minor, "currency": order.currency}
    if kind in ("settled", "reversed", "reinstated"):
        # The payment that settles the order; a reversal applies only to that payment.
        item["payment_ref"] = f"pay_{order.id}"
    item.update(fields)
    return item


def body_of(*events: dict[str, Any]) -> bytes:
    return json.dumps({"events": list(events)}).encode()


async def deliver(
    client: httpx.AsyncClient, fake: FakeProvider, *events: dict[str, Any]
) -> httpx.Response:
    """POST the events as one signed webhook delivery."""
    body = body_of(*events)
    return await client.post(f"/webhooks/{fake.name.value}", content=body, headers=fake.sign(body))


def results(resp: httpx.Response) -> list[str]:
    assert resp.status_code == 200, resp.text
    return [item["result"] for item in resp.json()["events"]]


async def settled_orders(catalog: Catalog, count: int = 1) -> list[Order]:
    """Orders settled through the real apply path (license + outbox row, one transaction)."""
    applier = Applier(catalog, public_url="http://gateway.test")
    orders = []
    for _ in range(count):
        order = await new_order(catalog)
        settle = PaymentSettled(
            provider=ProviderName.STRIPE,
            provider_ref=order.provider_ref or "",
            order_id=order.id,
            dedupe_key=f"evt_{order.id}",
            occurred_at=datetime.now(UTC),
            amount_minor=order.amount_minor,
            currency=order.currency,
        )
        await applier.apply(settle, b"{}")
        orders.append(order)
    return orders
