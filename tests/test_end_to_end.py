"""The whole flow per provider, through the real app, on SQLite and PostgreSQL:

buyer checks out -> provider fake holds a real checkout -> fake pays it and sends its
real (signed) webhooks -> exactly one license and one email; redelivery changes nothing.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import pytest

from config.catalog import Catalog
from config.settings import Settings
from gateway.app import create_app
from gateway.db.models import License, Order, OrderStatus, OutboxEmail
from providers.base import PaymentProvider
from sandbox.btcpay.harness import BTCPayGreenfieldHarness, BTCPayLegacyHarness
from sandbox.stripe.harness import StripeContractHarness
from tests.support.app import running

Webhook = tuple[bytes, dict[str, str]]


def _stripe_pay(h: StripeContractHarness, ref: str) -> list[Webhook]:
    signed = h.fake.complete_session(ref, paid=True)
    return [(signed.body, dict(signed.headers))]


def _greenfield_pay(h: BTCPayGreenfieldHarness, ref: str) -> list[Webhook]:
    return [(d.body, dict(d.headers)) for d in h.fake.pay_in_full(ref)]


def _legacy_pay(h: BTCPayLegacyHarness, ref: str) -> list[Webhook]:
    h.fake.pay_in_full(ref)
    return [(h.fake.legacy_ipn(ref, status="confirmed"), {"content-type": "application/json"})]


MODES: dict[str, tuple[Any, Callable[[Any, str], list[Webhook]]]] = {
    "stripe": (StripeContractHarness, _stripe_pay),
    "btcpay-greenfield": (BTCPayGreenfieldHarness, _greenfield_pay),
    "btcpay-legacy": (BTCPayLegacyHarness, _legacy_pay),
}


@pytest.mark.parametrize("mode", sorted(MODES))
async def test_paid_checkout_gets_exactly_one_license_and_email(
    mode: str, db_url: str, settings_factory: Callable[..., Settings], catalog: Catalog
) -> None:
    harness_cls, pay = MODES[mode]
    harness = harness_cls()
    try:
        built = harness.build_provider()
        provider: PaymentProvider = await built if inspect.isawaitable(built) else built
        app = create_app(
            settings_factory(database_url=db_url),
            catalog=catalog,
            providers={provider.name: provider},
            run_migrations=False,
        )
        async with running(app) as client:
            # given a buyer who checked out
            resp = await client.post(
                f"/checkout/{provider.name.value}/pro", json={"email": "buyer@example.com"}
            )
            assert resp.status_code == 201, resp.text
            order = await Order.get(id=resp.json()["order_id"])
            assert order.provider_ref is not None
            assert resp.json()["checkout_url"] == order.checkout_url

            # when the provider confirms payment with its real webhooks, delivered twice
            webhooks = pay(harness, order.provider_ref)
            for body, headers in webhooks + webhooks:
                answer = await client.post(
                    f"/webhooks/{provider.name.value}", content=body, headers=headers
                )
                assert answer.status_code == 200, answer.text

            # then the order is settled with one license and one email
            order = await Order.get(id=order.id)
            assert order.status == OrderStatus.SETTLED
            licenses = await License.filter(order_id=order.id)
            assert len(licenses) == 1
            assert (licenses[0].tier, licenses[0].addons) == ("pro", ["advanced-models"])
            assert await OutboxEmail.filter(order_id=order.id).count() == 1
    finally:
        await harness.aclose()
