"""Issue 8 (Stripe half) and issue 9 items 14/15, through the gateway's HTTP endpoints.

The real `StripeProvider` talks to the fake Stripe (real SDK, signed webhooks); every test
reproduces the attack or the loss the issue describes and fails on the code before the fix.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import httpx
import pytest

from config.catalog import Catalog, CatalogError
from config.settings import Settings
from gateway.app import create_app
from gateway.db.models import InboxEvent, License, LicenseStatus, Order, OrderStatus
from sandbox.stripe.api import FakeStripe
from sandbox.stripe.harness import StripeContractHarness
from sandbox.stripe.state import SignedEvent
from tests.support.stripe import stripe_gateway

SettingsFactory = Callable[..., Settings]


def with_product(catalog: Catalog, product_id: str, **changes: Any) -> Catalog:
    """`catalog` plus a copy of `pro` named `product_id` with `changes` (price, currency)."""
    base = catalog.get("pro")
    assert base is not None
    products = dict(catalog.products)
    products[product_id] = replace(base, id=product_id, **changes)
    return Catalog(products=products, tiers=catalog.tiers)


async def checkout(client: httpx.AsyncClient, product: str = "pro") -> Order:
    resp = await client.post(f"/checkout/stripe/{product}", json={"email": "buyer@example.com"})
    assert resp.status_code == 201, resp.text
    return await Order.get(id=resp.json()["order_id"])


async def deliver(client: httpx.AsyncClient, signed: SignedEvent) -> httpx.Response:
    resp = await client.post("/webhooks/stripe", content=signed.body, headers=signed.headers)
    assert resp.status_code == 200, resp.text
    return resp


async def license_status(order_id: str) -> LicenseStatus:
    return (await License.get(order_id=order_id)).status


# -- item 4: money per provider ---------------------------------------------------------


async def test_isk_price_is_charged_in_full_and_the_webhook_settles_the_order(
    db_url: str, settings_factory: SettingsFactory, catalog: Catalog
) -> None:
    # given 15000 ISK (ISO: zero decimals), which Stripe's API counts two-decimal
    fake = FakeStripe()
    isk = with_product(catalog, "iceland", amount_minor=15000, currency="ISK")
    async with stripe_gateway(fake, db_url, settings_factory, isk) as (client, _):
        # when the buyer checks out
        order = await checkout(client, "iceland")
        assert order.provider_ref is not None

        # then Stripe is asked for 15000.00 ISK, not 150.00
        price = fake.requests[-1].params["line_items"][0]["price_data"]
        assert (price["currency"], price["unit_amount"]) == ("isk", "1500000")
        # and Stripe's amount is converted back, so the payment matches the order
        await deliver(client, fake.complete_session(order.provider_ref))
        assert (await Order.get(id=order.id)).status == OrderStatus.SETTLED
        assert await license_status(order.id) == LicenseStatus.ACTIVE


@pytest.mark.parametrize(
    ("amount_minor", "currency"),
    [(100050, "MGA"), (1234, "KWD"), (5000, "IQD")],
    ids=["mga-fraction-stripe-counts-whole", "kwd-last-digit", "iqd-not-on-stripe"],
)
def test_price_stripe_cannot_charge_exactly_is_a_startup_error_naming_product_and_provider(
    settings_factory: SettingsFactory, catalog: Catalog, amount_minor: int, currency: str
) -> None:
    fake = FakeStripe()
    odd = with_product(catalog, "odd", amount_minor=amount_minor, currency=currency)
    provider = StripeContractHarness(fake=fake).build_provider()

    with pytest.raises(CatalogError, match=r"product 'odd'.*through stripe"):
        create_app(settings_factory(), catalog=odd, providers={provider.name: provider})


# -- item 6: events bound to the order's own checkout and payment -----------------------


async def test_foreign_payment_link_session_cannot_move_the_victim_or_revoke_its_license(
    db_url: str, settings_factory: SettingsFactory, catalog: Catalog
) -> None:
    fake = FakeStripe()
    async with stripe_gateway(fake, db_url, settings_factory, catalog) as (client, _):
        victim = await checkout(client)
        assert victim.provider_ref is not None
        # given an attacker who opens one of the account's Payment Links with
        # ?client_reference_id=<victim order> and pays by a delayed method
        foreign = fake.payment_link_session(client_reference_id=victim.id)
        await deliver(client, fake.complete_session(foreign["id"], paid=False))
        after_foreign = await Order.get(id=victim.id)
        assert after_foreign.status == OrderStatus.CREATED
        assert after_foreign.payment_ref is None

        # when the victim pays, and the attacker's payment succeeds and is then disputed
        await deliver(client, fake.complete_session(victim.provider_ref))
        await deliver(client, fake.succeed_async_payment(foreign["id"]))
        await deliver(client, fake.dispute(foreign["id"]))

        # then the victim keeps the order and the license it paid for
        saved = await Order.get(id=victim.id)
        assert saved.status == OrderStatus.SETTLED
        assert saved.payment_ref == fake.sessions[victim.provider_ref]["payment_intent"]
        assert await license_status(victim.id) == LicenseStatus.ACTIVE


# -- item 8: the way back from a reversal ----------------------------------------------


async def test_won_dispute_and_failed_refund_reinstate_the_license(
    db_url: str, settings_factory: SettingsFactory, catalog: Catalog
) -> None:
    fake = FakeStripe()
    async with stripe_gateway(fake, db_url, settings_factory, catalog) as (client, _):
        order = await checkout(client)
        sid = order.provider_ref
        assert sid is not None
        await deliver(client, fake.complete_session(sid))

        # a dispute revokes; winning it gives the license back
        await deliver(client, fake.dispute(sid))
        assert await license_status(order.id) == LicenseStatus.REVOKED
        await deliver(client, fake.close_dispute(sid, "won"))
        assert (await Order.get(id=order.id)).status == OrderStatus.SETTLED
        lic = await License.get(order_id=order.id)
        assert lic.status == LicenseStatus.ACTIVE
        assert lic.revoked_at is None
        assert not lic.revoke_reason

        # a full refund revokes; the bank returning it undoes the revocation
        await deliver(client, fake.refund(sid))
        assert await license_status(order.id) == LicenseStatus.REVOKED
        await deliver(client, fake.fail_refund(sid))
        assert (await Order.get(id=order.id)).status == OrderStatus.SETTLED
        assert await license_status(order.id) == LicenseStatus.ACTIVE


async def test_lost_dispute_keeps_the_license_revoked(
    db_url: str, settings_factory: SettingsFactory, catalog: Catalog
) -> None:
    fake = FakeStripe()
    async with stripe_gateway(fake, db_url, settings_factory, catalog) as (client, _):
        order = await checkout(client)
        assert order.provider_ref is not None
        await deliver(client, fake.complete_session(order.provider_ref))
        await deliver(client, fake.dispute(order.provider_ref))

        resp = await deliver(client, fake.close_dispute(order.provider_ref, "lost"))

        assert resp.json()["events"][0]["result"] == "ignored"
        assert (await Order.get(id=order.id)).status == OrderStatus.REVERSED
        assert await license_status(order.id) == LicenseStatus.REVOKED


# -- issue 9 items 14/15 and 2: odd but correctly signed payloads -------------------------


def _session_event(fake: FakeStripe, **changes: Any) -> dict[str, Any]:
    sid = fake.payment_link_session(client_reference_id="ord_" + "0" * 20)["id"]
    signed = fake.complete_session(sid)
    event: dict[str, Any] = json.loads(signed.body)
    event["data"]["object"].update(changes.pop("object", {}))
    event.update(changes)
    return event


def _signed(fake: FakeStripe, event: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(event).encode()
    return body, {"stripe-signature": fake.sign(body), "content-type": "application/json"}


ODD_EVENTS: dict[str, dict[str, Any]] = {
    "api-version-list": {"api_version": []},
    "metadata-list": {"object": {"metadata": ["order_id"], "client_reference_id": None}},
    "metadata-string": {"object": {"metadata": "order_id", "client_reference_id": None}},
    "event-id-300-chars": {"id": "evt_" + "a" * 296},
    "order-id-too-long": {"object": {"metadata": {"order_id": "ord_" + "a" * 300}}},
    "order-id-nul": {"object": {"metadata": {"order_id": "ord_\u0000" + "0" * 19}}},
    "order-id-foreign": {"object": {"metadata": {"order_id": "invoice-42"}}},
    "session-id-path": {"object": {"id": "cs_../../v1/charges"}},
    "amount-string": {"object": {"amount_total": "999"}},
}


@pytest.mark.parametrize("case", list(ODD_EVENTS))
async def test_correctly_signed_odd_payload_is_refused_or_ignored_never_500(
    db_url: str, settings_factory: SettingsFactory, catalog: Catalog, case: str
) -> None:
    fake = FakeStripe()
    async with stripe_gateway(fake, db_url, settings_factory, catalog) as (client, _):
        body, headers = _signed(fake, _session_event(fake, **ODD_EVENTS[case]))

        resp = await client.post("/webhooks/stripe", content=body, headers=headers)

        assert resp.status_code in (200, 400), resp.text
        if resp.status_code == 200:
            assert [e["result"] for e in resp.json()["events"]] == ["ignored"]
        assert await InboxEvent.all().count() == 0


async def test_signature_timestamp_with_trailing_garbage_is_refused_not_500(
    db_url: str, settings_factory: SettingsFactory, catalog: Catalog
) -> None:
    fake = FakeStripe()
    async with stripe_gateway(fake, db_url, settings_factory, catalog) as (client, _):
        body, _ = _signed(fake, _session_event(fake))
        # `t=<ts>=x` with a valid v1 over "<ts>.<body>": the SDK reads the timestamp as
        # "<ts>" and accepts the signature; only our own timestamp check sees "<ts>=x"
        stamp = int(time.time())
        mac = hmac.new(fake.webhook_secret.encode(), f"{stamp}.".encode() + body, hashlib.sha256)
        header = f"t={stamp}=x,v1={mac.hexdigest()}"

        resp = await client.post(
            "/webhooks/stripe", content=body, headers={"stripe-signature": header}
        )

        assert resp.status_code == 400, resp.text
        assert resp.json()["error"] == "bad_signature"


@pytest.mark.parametrize("order_id", ["ord_" + "a" * 60, "ord_%00x", "ord_" + "0" * 19 + "%00"])
async def test_status_page_for_a_foreign_order_id_is_404_not_a_database_error(
    db_url: str, settings_factory: SettingsFactory, catalog: Catalog, order_id: str
) -> None:
    async with stripe_gateway(FakeStripe(), db_url, settings_factory, catalog) as (client, _):
        resp = await client.get(f"/orders/{order_id}", params={"token": "x"})

        assert resp.status_code == 404, resp.text
        assert resp.json()["error"] == "not_found"


@pytest.mark.parametrize(
    "change",
    [{"id": "SESSION\u0000"}, {"id": "../SESSION"}, {"id": "SESSION/../../v1/charges"}],
    ids=["session-id-nul", "session-id-path-before", "session-id-path-after"],
)
async def test_signed_session_for_our_order_with_an_odd_id_is_4xx_never_5xx(
    db_url: str, settings_factory: SettingsFactory, catalog: Catalog, change: dict[str, str]
) -> None:
    # Stripe ids must have Stripe's shape in full, not merely contain it: a NUL byte reached
    # PostgreSQL (503, retried by Stripe for days), and a path was stored as a session id.
    fake = FakeStripe()
    async with stripe_gateway(fake, db_url, settings_factory, catalog) as (client, _):
        order = await checkout(client)
        assert order.provider_ref is not None
        event = json.loads(fake.complete_session(order.provider_ref).body)
        for key, value in change.items():
            event["data"]["object"][key] = value.replace("SESSION", order.provider_ref)
        body, headers = _signed(fake, event)

        resp = await client.post("/webhooks/stripe", content=body, headers=headers)

        assert resp.status_code == 400, resp.text
        assert (await Order.get(id=order.id)).status == OrderStatus.CREATED
        assert await InboxEvent.all().count() == 0


async def test_signed_dispute_with_a_nul_in_its_reason_is_4xx_and_revokes_nothing(
    db_url: str, settings_factory: SettingsFactory, catalog: Catalog
) -> None:
    # The dispute reason becomes the license's revoke reason: with a NUL byte PostgreSQL
    # refused it, and the 503 had Stripe retry the event for days.
    fake = FakeStripe()
    async with stripe_gateway(fake, db_url, settings_factory, catalog) as (client, _):
        order = await checkout(client)
        assert order.provider_ref is not None
        await deliver(client, fake.complete_session(order.provider_ref))

        signed = fake.dispute(order.provider_ref, reason="fraudulent\u0000")
        resp = await client.post("/webhooks/stripe", content=signed.body, headers=signed.headers)

        assert resp.status_code == 400, resp.text
        assert await license_status(order.id) == LicenseStatus.ACTIVE
