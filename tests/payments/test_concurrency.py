"""Concurrent deliveries through the HTTP endpoint: exactly one license and one email."""

from __future__ import annotations

import asyncio
from collections import Counter

from starlette.applications import Starlette

from config.catalog import Catalog
from gateway.db.models import InboxEvent, License, LicenseStatus, Order, OrderStatus, OutboxEmail
from sandbox.provider import FakeProvider
from tests.support.app import running
from tests.support.issuer import deliver, event, new_order, results


async def test_same_settle_fifty_times_concurrently_issues_one_license_one_email(
    app: Starlette, fake: FakeProvider, catalog: Catalog
) -> None:
    async with running(app) as client:
        order = await new_order(catalog)

        responses = await asyncio.gather(*(deliver(client, fake, event(order)) for _ in range(50)))

        outcomes = Counter(r for resp in responses for r in results(resp))
        assert outcomes == {"applied": 1, "duplicate": 49}
        assert await License.filter(order_id=order.id).count() == 1
        assert await OutboxEmail.filter(order_id=order.id).count() == 1
        assert await InboxEvent.filter(order_id=order.id).count() == 1
        assert (await Order.get(id=order.id)).status == OrderStatus.SETTLED


async def test_two_different_settle_events_for_one_order_concurrently_issue_one_license(
    app: Starlette, fake: FakeProvider, catalog: Catalog
) -> None:
    # Stripe sends checkout.session.completed and async_payment_succeeded for one payment:
    # two facts, two dedupe keys, one order.
    async with running(app) as client:
        orders = [await new_order(catalog) for _ in range(5)]
        deliveries = [
            deliver(client, fake, event(order, dedupe_key=f"{name}:{order.id}"))
            for _ in range(5)
            for order in orders
            for name in ("evt_completed", "evt_async_succeeded")
        ]

        responses = await asyncio.gather(*deliveries)

        outcomes = Counter(r for resp in responses for r in results(resp))
        # per order: one applied, the other event a recorded no-op, the rest duplicates
        assert outcomes == {"applied": 5, "noop": 5, "duplicate": 40}
        for order in orders:
            assert await License.filter(order_id=order.id).count() == 1
            assert await OutboxEmail.filter(order_id=order.id).count() == 1
            assert await InboxEvent.filter(order_id=order.id).count() == 2


async def test_settle_and_refund_racing_never_leave_an_active_license_on_a_reversed_order(
    app: Starlette, fake: FakeProvider, catalog: Catalog
) -> None:
    async with running(app) as client:
        orders = [await new_order(catalog) for _ in range(10)]
        deliveries = [
            deliver(client, fake, event(order, kind))
            for order in orders
            for kind in ("settled", "reversed", "settled", "pending")
        ]

        await asyncio.gather(*deliveries)

        for order in orders:
            saved = await Order.get(id=order.id)
            assert saved.status == OrderStatus.REVERSED
            assert await License.filter(order_id=order.id, status=LicenseStatus.ACTIVE).count() == 0
            assert await License.filter(order_id=order.id).count() <= 1
