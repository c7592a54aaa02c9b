"""Concurrent and retried checkouts with one Idempotency-Key (issue 8 items 5 and 9, issue 9
item 16): one order, one provider checkout, no 503 for a lost race, and a payable session
for a retry long after the first attempt.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import SecretStr

from config.catalog import Catalog
from config.settings import Settings, StripeSettings
from gateway.app import create_app
from gateway.checkout import claim
from gateway.db.models import Order
from providers.base import CheckoutRequest, CheckoutSession
from providers.events import ProviderName
from providers.stripe.provider import StripeProvider
from sandbox.provider import FakeProvider
from sandbox.stripe.api import FakeStripe
from tests.conftest import running

SettingsFactory = Callable[..., Settings]
BODY = {"email": "buyer@example.com"}


class SlowProvider(FakeProvider):
    """A provider whose checkout creation takes `delay` seconds (a slow BTCPay)."""

    def __init__(self, delay: float) -> None:
        super().__init__(ProviderName.BTCPAY)
        self.delay = delay
        self.calls = 0

    async def create_checkout(self, req: CheckoutRequest) -> CheckoutSession:
        self.calls += 1
        await asyncio.sleep(self.delay)
        return await super().create_checkout(req)


async def test_ten_concurrent_checkouts_with_one_key_make_one_order_and_one_provider_checkout(
    db_url: str, settings_factory: SettingsFactory, catalog: Catalog
) -> None:
    provider = SlowProvider(delay=0.3)
    app = create_app(
        settings_factory(database_url=db_url),
        catalog=catalog,
        providers={provider.name: provider},
        run_migrations=False,
        run_mailer=False,
    )
    async with running(app) as client:
        headers = {"Idempotency-Key": "double-click"}

        answers = await asyncio.gather(
            *(client.post("/checkout/btcpay/pro", json=BODY, headers=headers) for _ in range(10))
        )

        codes = sorted(a.status_code for a in answers)
        assert codes == [200] * 9 + [201], [a.text for a in answers]
        assert provider.calls == 1
        assert await Order.all().count() == 1
        order = await Order.get()
        assert {a.json()["checkout_url"] for a in answers} == {order.checkout_url}
        # exactly one answer (the creator's) carries the status token
        assert sum(order.status_token in a.text for a in answers) == 1


async def test_a_retry_while_the_first_create_is_still_running_gets_409_with_retry_after(
    db_url: str,
    settings_factory: SettingsFactory,
    catalog: Catalog,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(claim, "WAIT_SECONDS", 0.2)
    provider = SlowProvider(delay=1.0)
    app = create_app(
        settings_factory(database_url=db_url),
        catalog=catalog,
        providers={provider.name: provider},
        run_migrations=False,
        run_mailer=False,
    )
    async with running(app) as client:
        headers = {"Idempotency-Key": "impatient"}
        first = asyncio.create_task(client.post("/checkout/btcpay/pro", json=BODY, headers=headers))
        await asyncio.sleep(0.1)

        retry = await client.post("/checkout/btcpay/pro", json=BODY, headers=headers)

        assert retry.status_code == 409, retry.text
        assert retry.json()["error"] == "checkout_in_progress"
        assert int(retry.headers["retry-after"]) >= 1
        assert (await first).status_code == 201
        # the retry never called the provider: no second invoice for one order
        assert provider.calls == 1


async def test_retry_hours_later_still_gets_a_payable_stripe_session(
    db_url: str, settings_factory: SettingsFactory, catalog: Catalog
) -> None:
    fake = FakeStripe()
    stripe = StripeProvider(
        StripeSettings(
            enabled=True,
            secret_key=SecretStr(fake.api_key),
            webhook_secret=SecretStr(fake.webhook_secret),
            max_network_retries=0,
            session_expires_minutes=60,
        ),
        transport=fake.transport(),
    )
    app = create_app(
        settings_factory(database_url=db_url),
        catalog=catalog,
        providers={stripe.name: stripe},
        run_migrations=False,
        run_mailer=False,
    )
    try:
        async with running(app) as client:
            headers = {"Idempotency-Key": "network-blip"}
            # given a first attempt that failed while Stripe was down
            fake.fail_status = 500
            down = await client.post("/checkout/stripe/pro", json=BODY, headers=headers)
            assert down.status_code == 503
            fake.fail_status = None
            # ... two hours ago, longer than the 60-minute session lifetime
            order = await Order.get()
            await Order.filter(id=order.id).update(
                created_at=datetime.now(UTC) - timedelta(hours=2)
            )

            # when the buyer retries
            retry = await client.post("/checkout/stripe/pro", json=BODY, headers=headers)

            # then they get a session Stripe accepted, open for at least 30 more minutes
            assert retry.status_code == 200, retry.text
            saved = await Order.get(id=order.id)
            session = fake.sessions[saved.provider_ref or ""]
            assert session["status"] == "open"
            assert session["expires_at"] >= fake.clock() + 30 * 60
    finally:
        await stripe.aclose()
