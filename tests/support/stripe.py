"""Stripe for tests: the real app wired to a fake Stripe over HTTP-shaped calls (the contract
harness), a paid order whose webhook was lost, and signed `checkout.session.*` events."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import stripe
from starlette.applications import Starlette

from config.catalog import Catalog
from config.settings import Settings
from gateway.app import create_app
from gateway.db.models import Order
from providers.stripe.provider import SDK_API_VERSION
from sandbox.stripe.api import FakeStripe
from sandbox.stripe.harness import StripeContractHarness
from tests.support.app import running

# The Stripe webhook secret the gateways under test are given; `sign_event` signs with it.
WEBHOOK_SECRET = "whsec_two_processes_test"


@contextlib.asynccontextmanager
async def stripe_gateway(
    fake: FakeStripe, db_url: str, settings_factory: Callable[..., Settings], catalog: Catalog
) -> AsyncIterator[tuple[httpx.AsyncClient, Starlette]]:
    """A client for the app (real StripeProvider against `fake`), mailer and migrations off."""
    harness = StripeContractHarness(fake=fake)
    try:
        provider = harness.build_provider()
        app = create_app(
            settings_factory(database_url=db_url),
            catalog=catalog,
            providers={provider.name: provider},
            run_migrations=False,
            run_mailer=False,
        )
        async with running(app) as client:
            yield client, app
    finally:
        await harness.aclose()


async def paid_without_webhook(client: httpx.AsyncClient, fake: FakeStripe, age: timedelta) -> str:
    """A checkout through HTTP, paid at Stripe, its webhook lost; the order `age` old."""
    resp = await client.post("/checkout/stripe/pro", json={"email": "buyer@example.com"})
    assert resp.status_code == 201, resp.text
    order = await Order.get(id=resp.json()["order_id"])
    assert order.provider_ref is not None
    fake.complete_session(order.provider_ref)  # signed, but never delivered
    await Order.filter(id=order.id).update(created_at=datetime.now(UTC) - age)
    return order.id


def session_event(order: Order, event_id: str, event_type: str) -> dict[str, Any]:
    """A Stripe snapshot event as in shared/notes/stripe.md §7, for one of our orders."""
    return {
        "id": event_id,
        "object": "event",
        "api_version": SDK_API_VERSION,
        "created": int(time.time()),
        "data": {
            "object": {
                "id": order.provider_ref,
                "object": "checkout.session",
                "amount_subtotal": order.amount_minor,
                "amount_total": order.amount_minor,
                "client_reference_id": order.id,
                "currency": order.currency.lower(),
                "customer_email": order.buyer_email,
                "livemode": False,
                "metadata": {"order_id": order.id, "product": order.product_id},
                "mode": "payment",
                "payment_intent": f"pi_{order.id}",
                "payment_status": "paid",
                "status": "complete",
                "url": None,
            }
        },
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": event_type,
    }


def sign_event(event: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    """The event as Stripe delivers it: its bytes and a `stripe-signature` header."""
    payload = json.dumps(event)
    header = stripe.WebhookSignature.generate_signature_header(payload, WEBHOOK_SECRET)
    return payload.encode(), {"stripe-signature": header, "content-type": "application/json"}
