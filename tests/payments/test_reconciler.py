"""The reconciler (issue 8 items 7 and 11): paid orders whose webhook was lost get their
license; provider outages back off; orders past the horizon end failed; a webhook the
provider cannot back yet brings the next look forward. SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from starlette.applications import Starlette

from config.catalog import Catalog
from config.settings import Settings
from gateway.db.models import InboxEvent, License, Order, OrderStatus
from gateway.payments.reconciler import Reconciler
from gateway.state import AppState
from providers.events import PaymentSettled, ProviderName
from sandbox.provider import FakeProvider
from sandbox.stripe.api import FakeStripe
from tests.support.app import running
from tests.support.issuer import deliver, event, fake_gateway
from tests.support.stripe import paid_without_webhook, stripe_gateway

SettingsFactory = Callable[..., Settings]
BODY = {"email": "buyer@example.com"}


def sample(name: str, **labels: str) -> float:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value(name, labels) or 0.0


def reconciler(app: Starlette) -> Reconciler:
    state: AppState = app.state.gateway
    return Reconciler(state.settings, state.providers, state.applier)


def session_polls(fake: FakeStripe) -> Counter[str]:
    return Counter(
        r.path.rsplit("/", 1)[1]
        for r in fake.requests
        if r.method == "GET" and r.path.startswith("/v1/checkout/sessions/")
    )


async def test_paid_order_whose_webhook_was_lost_gets_its_license_exactly_once(
    db_url: str, settings_factory: SettingsFactory, catalog: Catalog
) -> None:
    fake = FakeStripe()
    async with stripe_gateway(fake, db_url, settings_factory, catalog) as (client, app):
        order_id = await paid_without_webhook(client, fake, timedelta(minutes=20))

        passes = sample("gateway_reconciler_passes_total", outcome="ok")
        repairs = sample(
            "gateway_reconciler_repairs_total", provider="stripe", outcome="PaymentSettled"
        )
        issued = sample("gateway_licenses_issued_total", source="reconcile")

        report = await reconciler(app).run_once()

        assert report.changed == [order_id]
        assert (await Order.get(id=order_id)).status == OrderStatus.SETTLED
        assert sample("gateway_reconciler_passes_total", outcome="ok") == passes + 1
        assert (
            sample("gateway_reconciler_repairs_total", provider="stripe", outcome="PaymentSettled")
            == repairs + 1
        )
        assert sample("gateway_licenses_issued_total", source="reconcile") == issued + 1
        assert await License.filter(order_id=order_id).count() == 1
        # the webhook arrives after all: same fact, nothing more
        late = fake.events[-1]
        resp = await client.post("/webhooks/stripe", content=late.body, headers=late.headers)
        assert resp.json()["events"][0]["result"] == "noop"
        assert await License.filter(order_id=order_id).count() == 1
        # and a second pass does not ask about a settled order again
        await Order.filter(id=order_id).update(recheck_at=None)
        assert (await reconciler(app).run_once()).polled == 0


async def test_young_orders_are_left_to_their_webhooks(
    db_url: str, settings_factory: SettingsFactory, catalog: Catalog
) -> None:
    fake = FakeStripe()
    async with stripe_gateway(fake, db_url, settings_factory, catalog) as (client, app):
        order_id = await paid_without_webhook(client, fake, timedelta(minutes=1))

        report = await reconciler(app).run_once()

        assert report.polled == 0
        assert (await Order.get(id=order_id)).status == OrderStatus.CREATED


async def test_two_concurrent_passes_never_poll_the_same_order(
    db_url: str, settings_factory: SettingsFactory, catalog: Catalog
) -> None:
    fake = FakeStripe()
    async with stripe_gateway(fake, db_url, settings_factory, catalog) as (client, app):
        ids = [await paid_without_webhook(client, fake, timedelta(minutes=30)) for _ in range(8)]

        first, second = await asyncio.gather(reconciler(app).run_once(), reconciler(app).run_once())

        assert first.polled + second.polled == 8
        assert set(session_polls(fake).values()) == {1}
        assert await Order.filter(id__in=ids, status=OrderStatus.SETTLED).count() == 8
        assert await License.filter(order_id__in=ids).count() == 8


async def test_provider_outage_backs_off_and_the_order_settles_once_it_is_back(
    db_url: str, settings_factory: SettingsFactory, catalog: Catalog
) -> None:
    fake = FakeStripe()
    async with stripe_gateway(fake, db_url, settings_factory, catalog) as (client, app):
        ids = [await paid_without_webhook(client, fake, timedelta(minutes=30)) for _ in range(3)]
        fake.unreachable = True

        report = await reconciler(app).run_once()

        # one failed poll stops this provider's pass; that order backs off
        assert report.unavailable == ["stripe"]
        assert report.polled == 1
        backed_off = await Order.filter(id__in=ids, recheck_failures=1)
        assert len(backed_off) == 1
        assert backed_off[0].recheck_at is not None
        assert backed_off[0].recheck_at > datetime.now(UTC) + timedelta(seconds=60)

        fake.unreachable = False
        await reconciler(app).run_once()
        await Order.filter(id__in=ids).update(recheck_at=None)
        await reconciler(app).run_once()
        assert await Order.filter(id__in=ids, status=OrderStatus.SETTLED).count() == 3
        assert await Order.filter(id__in=ids, recheck_failures=0).count() == 3


async def test_unpaid_order_past_the_horizon_ends_failed_with_the_reason(
    db_url: str, settings_factory: SettingsFactory, catalog: Catalog
) -> None:
    fake = FakeStripe()
    async with stripe_gateway(fake, db_url, settings_factory, catalog) as (client, app):
        resp = await client.post("/checkout/stripe/pro", json=BODY)
        order_id = resp.json()["order_id"]
        await Order.filter(id=order_id).update(created_at=datetime.now(UTC) - timedelta(hours=80))

        report = await reconciler(app).run_once()

        assert report.expired == [order_id]
        order = await Order.get(id=order_id)
        assert order.status == OrderStatus.FAILED
        assert "horizon" in order.notes
        page = await client.get(f"/orders/{order_id}", params={"token": order.status_token})
        assert page.json()["status"] == "failed"


async def test_webhook_the_provider_cannot_back_yet_brings_a_recheck_forward(
    db_url: str, settings_factory: SettingsFactory, catalog: Catalog
) -> None:
    # given a young BTCPay order that already failed (its invoice expired)
    fake = FakeProvider(ProviderName.BTCPAY)
    app, _ = fake_gateway(db_url, settings_factory, catalog, fake=fake)
    async with running(app) as client:
        resp = await client.post("/checkout/btcpay/pro", json=BODY)
        order = await Order.get(id=resp.json()["order_id"])
        assert order.provider_ref is not None
        await Order.filter(id=order.id).update(status=OrderStatus.FAILED, recheck_at=None)

        # when an instant late payment's event arrives before BTCPay marks it PaidLate
        hint = {"kind": "ignored", "provider_ref": order.provider_ref, "recheck_soon": True}
        answer = await deliver(client, fake, hint)

        # then it takes no dedupe slot, and the order is due again within seconds
        assert answer.json()["events"][0]["result"] == "ignored"
        assert await InboxEvent.all().count() == 0
        flagged = await Order.get(id=order.id)
        assert flagged.recheck_at is not None
        assert flagged.recheck_at <= datetime.now(UTC) + timedelta(seconds=31)

        # and once BTCPay has marked it, the re-check settles the order through apply
        settled = event(order, dedupe_key=f"reconcile:{order.provider_ref}:paid")
        fake.statuses[order.provider_ref] = PaymentSettled(
            provider=fake.name,
            provider_ref=order.provider_ref,
            order_id=order.id,
            dedupe_key=settled["dedupe_key"],
            occurred_at=datetime.now(UTC),
            payment_ref=settled["payment_ref"],
            amount_minor=order.amount_minor,
            currency=order.currency,
        )
        await Order.filter(id=order.id).update(recheck_at=datetime.now(UTC))
        await reconciler(app).run_once()
        assert (await Order.get(id=order.id)).status == OrderStatus.SETTLED
        assert await License.filter(order_id=order.id).count() == 1


async def test_order_whose_checkout_was_never_created_fails_past_the_horizon(
    db_url: str, settings_factory: SettingsFactory, catalog: Catalog
) -> None:
    fake = FakeStripe()
    async with stripe_gateway(fake, db_url, settings_factory, catalog) as (client, app):
        # given a checkout attempt while Stripe was down, never retried
        fake.unreachable = True
        down = await client.post("/checkout/stripe/pro", json=BODY)
        assert down.status_code == 503
        fake.unreachable = False
        order = await Order.get()
        await Order.filter(id=order.id).update(created_at=datetime.now(UTC) - timedelta(hours=80))

        report = await reconciler(app).run_once()

        assert report.expired == [order.id]
        saved = await Order.get(id=order.id)
        assert saved.status == OrderStatus.FAILED
        assert "no checkout was created" in saved.notes
