"""The license API through the real app, on SQLite and PostgreSQL: validate / activate /
deactivate / token, key tolerance, malformed bodies, seats (also under 50 concurrent
activations), revocation, rate limits and body caps."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Route

from config.catalog import Catalog
from config.settings import Settings
from gateway.app import create_app
from gateway.db.models import Activation, License, LicenseStatus, Order
from sandbox.provider import FakeProvider
from sandbox.stripe.harness import StripeContractHarness
from tests.support.app import running
from tests.support.issuer import deliver, event, fake_gateway, new_order
from tests.support.license import new_license

SettingsFactory = Callable[..., Settings]
POSTS = ("validate", "activate", "deactivate", "token")


async def _post(client: httpx.AsyncClient, what: str, **body: Any) -> httpx.Response:
    return await client.post(f"/licenses/{what}", json=body)


async def test_validate_answers_valid_with_the_license_block(
    app: Starlette, catalog: Catalog
) -> None:
    async with running(app) as client:
        lic = await new_license(catalog)

        resp = await _post(client, "validate", key=lic.key)

        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert (body["valid"], body["code"]) == (True, "VALID")
        block = body["license"]
        assert block["status"] == "active"
        assert (block["product"], block["product_name"]) == ("pro", "Local AI Studio Pro")
        assert (block["tier"], block["addons"]) == ("pro", ["advanced-models"])
        assert (block["seats"], block["seats_used"]) == (3, 0)
        assert block["issued_at"].endswith("Z")
        assert "revoked_at" not in block
        assert lic.key not in resp.text  # the answer never echoes the key


async def test_unknown_or_impossible_key_is_not_found_without_license_block(
    app: Starlette, catalog: Catalog
) -> None:
    async with running(app) as client:
        await new_license(catalog)
        for key in ("ABCD-EFGH-JKMN-PQRS", "not a key at all", "0000-1111-OOOO-IIII"):
            resp = await _post(client, "validate", key=key, fingerprint="m1")

            assert resp.status_code == 200, resp.text
            assert resp.json() == {
                "valid": False,
                "code": "NOT_FOUND",
                "detail": "no license with this key",
            }
        for what in ("activate", "token", "deactivate"):
            resp = await _post(client, what, key="ABCD-EFGH-JKMN-PQRS", fingerprint="m1")
            assert resp.status_code == 404, (what, resp.text)
            assert resp.json()["code"] == "NOT_FOUND"


async def test_key_pasted_in_lower_case_with_spaces_and_dashes_matches(
    app: Starlette, catalog: Catalog
) -> None:
    async with running(app) as client:
        lic = await new_license(catalog)
        pasted = f"  -{lic.key.lower().replace('-', ' - ')}-\n"

        activated = await _post(client, "activate", key=pasted, fingerprint="m1")
        validated = await _post(client, "validate", key=lic.key.replace("-", ""), fingerprint="m1")

        assert activated.status_code == 201, activated.text
        assert validated.json()["code"] == "VALID"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"{not json", "body"),
        (b"[1, 2]", "body"),
        (b'"a string"', "body"),
        (b"{}", "key"),
        (b'{"key": 12345}', "key"),
        (b'{"key": ""}', "key"),
        (b'{"key": "ABCD-EFGH-JKMN-PQRS", "fingerprint": ["x"]}', "fingerprint"),
        (b'{"key": "ABCD-EFGH-JKMN-PQRS", "fingerprint": "' + b"x" * 129 + b'"}', "fingerprint"),
        (b'{"key": "' + b"A" * 200 + b'"}', "key"),
        (b"\xff\xfe\x00", "body"),
        (b"[" * 15000, "body"),
        (b'{"key": "ABCD-EFGH-JKMN-PQRS", "fingerprint": "a\\u0000b"}', "fingerprint"),
        (b'{"key": "ABCD-EFGH-JKMN-PQRS", "fingerprint": "m", "label": "a\\u0007"}', "label"),
    ],
)
async def test_malformed_body_is_422_naming_the_field(
    body: bytes, field: str, app: Starlette
) -> None:
    async with running(app) as client:
        for what in ("validate", "activate", "token", "deactivate"):
            if field == "label" and what != "activate":
                continue  # only activate takes a label
            resp = await client.post(
                f"/licenses/{what}", content=body, headers={"content-type": "application/json"}
            )

            assert resp.status_code == 422, (what, resp.text)
            assert resp.json()["field"] == field
            assert resp.json()["detail"].startswith(f"{field}:")


async def test_activate_requires_a_fingerprint_and_bounds_the_label(
    app: Starlette, catalog: Catalog
) -> None:
    async with running(app) as client:
        lic = await new_license(catalog)
        missing = await _post(client, "activate", key=lic.key)
        long_label = await _post(client, "activate", key=lic.key, fingerprint="m", label="L" * 129)
        long_fpr = await _post(client, "validate", key=lic.key, fingerprint="f" * 129)

        assert (missing.status_code, missing.json()["field"]) == (422, "fingerprint")
        assert (long_label.status_code, long_label.json()["field"]) == (422, "label")
        assert (long_fpr.status_code, long_fpr.json()["field"]) == (422, "fingerprint")
        assert await Activation.all().count() == 0


async def test_activate_then_same_fingerprint_again_keeps_one_seat(
    app: Starlette, catalog: Catalog
) -> None:
    async with running(app) as client:
        lic = await new_license(catalog)
        before = await _post(client, "validate", key=lic.key, fingerprint="laptop-1")

        first = await _post(client, "activate", key=lic.key, fingerprint="laptop-1", label="Ann")
        again = await _post(client, "activate", key=lic.key, fingerprint="laptop-1")
        after = await _post(client, "validate", key=lic.key, fingerprint="laptop-1")

        assert before.json()["code"] == "NOT_ACTIVATED"
        assert before.json()["valid"] is False
        assert first.status_code == 201, first.text
        assert again.status_code == 200, again.text
        seat = first.json()["activation"]
        assert seat["fingerprint"] == "laptop-1"
        assert seat["label"] == "Ann"
        assert again.json()["activation"]["id"] == seat["id"]
        assert first.json()["license"]["seats_used"] == 1
        assert again.json()["license"]["seats_used"] == 1
        assert first.json()["token"].count(".") == 2
        assert after.json()["code"] == "VALID"
        assert after.json()["license"]["seats_used"] == 1
        assert await Activation.filter(license_id=lic.id).count() == 1


async def test_seat_limit_then_deactivate_frees_a_seat_for_another_machine(
    app: Starlette, catalog: Catalog
) -> None:
    async with running(app) as client:
        lic = await new_license(catalog)  # pro tier: 3 seats
        for n in range(3):
            assert (
                await _post(client, "activate", key=lic.key, fingerprint=f"m{n}")
            ).status_code == 201

        refused = await _post(client, "activate", key=lic.key, fingerprint="m3")
        freed = await _post(client, "deactivate", key=lic.key, fingerprint="m0")
        freed_again = await _post(client, "deactivate", key=lic.key, fingerprint="m0")
        taken = await _post(client, "activate", key=lic.key, fingerprint="m3")
        old = await _post(client, "validate", key=lic.key, fingerprint="m0")

        assert refused.status_code == 403
        assert refused.json()["code"] == "SEAT_LIMIT"
        assert refused.json()["error"] == "seat_limit"
        assert refused.json()["license"]["seats_used"] == 3
        assert freed.status_code == 204
        assert freed_again.status_code == 404
        assert taken.status_code == 201, taken.text
        assert old.json()["code"] == "NOT_ACTIVATED"
        seats = await Activation.filter(license_id=lic.id)
        assert sorted(seat.fingerprint for seat in seats) == ["m1", "m2", "m3"]


async def test_token_refresh_needs_an_existing_activation(app: Starlette, catalog: Catalog) -> None:
    async with running(app) as client:
        lic = await new_license(catalog)
        none_yet = await _post(client, "token", key=lic.key, fingerprint="m1")
        await _post(client, "activate", key=lic.key, fingerprint="m1")

        fresh = await _post(client, "token", key=lic.key, fingerprint="m1")

        assert none_yet.status_code == 404
        assert none_yet.json()["code"] == "NOT_ACTIVATED"
        assert fresh.status_code == 200, fresh.text
        assert fresh.json()["token"].count(".") == 2
        assert fresh.json()["token_expires_at"].endswith("Z")
        assert fresh.json()["activation"]["fingerprint"] == "m1"


async def test_revocation_shows_at_once_in_validate_activate_and_token(
    app: Starlette, fake: FakeProvider, catalog: Catalog
) -> None:
    async with running(app) as client:
        order = await new_order(catalog)
        await deliver(client, fake, event(order))
        lic = await License.get(order_id=order.id)
        assert (await _post(client, "activate", key=lic.key, fingerprint="m1")).status_code == 201

        await deliver(client, fake, event(order, "reversed", reason="dispute: fraudulent"))
        validated = await _post(client, "validate", key=lic.key, fingerprint="m1")
        activated = await _post(client, "activate", key=lic.key, fingerprint="m2")
        refreshed = await _post(client, "token", key=lic.key, fingerprint="m1")

        assert validated.status_code == 200
        assert (validated.json()["valid"], validated.json()["code"]) == (False, "REVOKED")
        block = validated.json()["license"]
        assert block["status"] == "revoked"
        assert block["revoke_reason"] == "dispute: fraudulent"
        assert block["revoked_at"] is not None
        for resp in (activated, refreshed):
            assert resp.status_code == 403, resp.text
            assert resp.json()["code"] == "REVOKED"
            assert "token" not in resp.json()


async def test_fifty_concurrent_activations_on_three_seats_give_exactly_three(
    app: Starlette, catalog: Catalog
) -> None:
    async with running(app) as client:
        lic = await new_license(catalog)

        answers = await asyncio.gather(
            *(_post(client, "activate", key=lic.key, fingerprint=f"machine-{n}") for n in range(50))
        )

        statuses = Counter(resp.status_code for resp in answers)
        assert statuses == {201: 3, 403: 47}, [r.text for r in answers if r.status_code >= 500]
        assert await Activation.filter(license_id=lic.id).count() == 3


async def test_the_same_machine_activating_concurrently_takes_one_seat(
    app: Starlette, catalog: Catalog
) -> None:
    async with running(app) as client:
        lic = await new_license(catalog)

        answers = await asyncio.gather(
            *(_post(client, "activate", key=lic.key, fingerprint="same") for _ in range(10))
        )

        assert Counter(r.status_code for r in answers) == {201: 1, 200: 9}
        assert len({r.json()["activation"]["id"] for r in answers}) == 1
        assert await Activation.filter(license_id=lic.id).count() == 1


async def test_rate_limit_per_ip_answers_429_with_retry_after(
    db_url: str, settings_factory: SettingsFactory, catalog: Catalog
) -> None:
    app, _ = fake_gateway(db_url, settings_factory, catalog, limits={"license_per_ip": "5/minute"})
    async with running(app) as client:
        lic = await new_license(catalog)
        answers = [await _post(client, "validate", key=lic.key) for _ in range(5)]

        limited = await _post(client, "activate", key=lic.key, fingerprint="m1")

        assert [r.status_code for r in answers] == [200] * 5
        assert limited.status_code == 429
        assert int(limited.headers["retry-after"]) >= 1
        assert limited.json()["error"] == "rate_limited"
        assert await Activation.all().count() == 0


async def test_malformed_requests_count_against_the_ip_budget_too(
    db_url: str, settings_factory: SettingsFactory, catalog: Catalog
) -> None:
    app, _ = fake_gateway(db_url, settings_factory, catalog, limits={"license_per_ip": "3/minute"})
    async with running(app) as client:
        junk = [await client.post("/licenses/validate", content=b"{junk") for _ in range(3)]

        limited = await client.post("/licenses/validate", content=b"{junk")

        assert [r.status_code for r in junk] == [422, 422, 422]
        assert limited.status_code == 429


async def test_rate_limit_per_key_spans_spellings_of_one_key(
    db_url: str, settings_factory: SettingsFactory, catalog: Catalog
) -> None:
    app, _ = fake_gateway(db_url, settings_factory, catalog, limits={"license_per_key": "3/minute"})
    async with running(app) as client:
        lic = await new_license(catalog)
        spellings = [lic.key, lic.key.lower(), f" {lic.key.replace('-', '')} "]
        answers = [await _post(client, "validate", key=k) for k in spellings]

        limited = await _post(client, "validate", key=lic.key)
        other = await _post(client, "validate", key="ABCD-EFGH-JKMN-PQRS")

        assert [r.status_code for r in answers] == [200, 200, 200]
        assert limited.status_code == 429
        assert other.status_code == 200  # another key has its own budget


@pytest.mark.parametrize("what", POSTS)
async def test_oversize_body_is_413(what: str, app: Starlette) -> None:
    async with running(app) as client:
        resp = await client.post(
            f"/licenses/{what}",
            content=b'{"key": "' + b"A" * (5 * 1024 * 1024) + b'"}',
            headers={"content-type": "application/json"},
        )

        assert resp.status_code == 413
        assert resp.json()["error"] == "payload_too_large"


async def test_keys_are_logged_masked_only(
    app: Starlette, catalog: Catalog, caplog: pytest.LogCaptureFixture
) -> None:
    # INFO: the gateway's own lines. (Tortoise's DEBUG logs every SQL parameter verbatim,
    # keys and emails included: a debugging aid, never for production.)
    caplog.set_level(logging.INFO)
    async with running(app) as client:
        lic = await new_license(catalog)
        for what in ("activate", "validate", "token", "deactivate"):
            await _post(client, what, key=lic.key.lower(), fingerprint="m1")

    assert lic.key[-4:] in caplog.text  # activation and deactivation were logged ...
    assert lic.key not in caplog.text  # ... but never the whole key
    assert lic.key.lower() not in caplog.text


async def test_revoked_license_without_reason_still_answers(
    app: Starlette, catalog: Catalog
) -> None:
    async with running(app) as client:
        lic = await new_license(catalog)
        await License.filter(id=lic.id).update(status=LicenseStatus.REVOKED)

        resp = await _post(client, "validate", key=lic.key)

        assert resp.json()["code"] == "REVOKED"
        assert resp.json()["license"]["revoke_reason"] is None


async def test_stripe_refund_webhook_revokes_the_license_end_to_end(
    db_url: str, settings_factory: SettingsFactory, catalog: Catalog
) -> None:
    harness = StripeContractHarness()
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
            # given a card purchase, paid, and its license activated on one machine
            checkout = await client.post("/checkout/stripe/pro", json={"email": "b@example.com"})
            assert checkout.status_code == 201, checkout.text
            order = await Order.get(id=checkout.json()["order_id"])
            assert order.provider_ref is not None
            paid = harness.fake.complete_session(order.provider_ref, paid=True)
            answer = await client.post("/webhooks/stripe", content=paid.body, headers=paid.headers)
            assert answer.status_code == 200, answer.text
            lic = await License.get(order_id=order.id)
            activated = await _post(client, "activate", key=lic.key, fingerprint="m1")
            assert activated.status_code == 201, activated.text

            # when the seller refunds it in Stripe and Stripe sends charge.refunded
            refunded = harness.fake.refund(order.provider_ref)
            answer = await client.post(
                "/webhooks/stripe", content=refunded.body, headers=refunded.headers
            )
            assert answer.status_code == 200, answer.text

            # then the very next validate, activate and token refresh see it revoked
            validated = await _post(client, "validate", key=lic.key, fingerprint="m1")
            again = await _post(client, "activate", key=lic.key, fingerprint="m2")
            refreshed = await _post(client, "token", key=lic.key, fingerprint="m1")
            assert (validated.json()["valid"], validated.json()["code"]) == (False, "REVOKED")
            assert validated.json()["license"]["revoked_at"] is not None
            assert (again.status_code, again.json()["code"]) == (403, "REVOKED")
            assert (refreshed.status_code, refreshed.json()["code"]) == (403, "REVOKED")
    finally:
        await harness.aclose()


async def test_license_api_answers_are_counted_by_endpoint_and_status(
    db_url: str, settings_factory: Callable[..., Settings], catalog: Catalog
) -> None:
    from prometheus_client import REGISTRY

    # /metrics is closed by default: this gateway opens it to read the scrape
    app, _ = fake_gateway(db_url, settings_factory, catalog, metrics_public=True)

    def count(endpoint: str, code: str) -> float:
        labels = {"endpoint": endpoint, "code": code}
        return REGISTRY.get_sample_value("gateway_license_api_requests_total", labels) or 0.0

    before = (count("validate", "200"), count("activate", "422"), count("activate", "201"))
    async with running(app) as client:
        lic = await new_license(catalog)
        await _post(client, "validate", key=lic.key)
        await _post(client, "activate", key=lic.key)  # no fingerprint: 422, raised
        await _post(client, "activate", key=lic.key, fingerprint="m1")
        scrape = (await client.get("/metrics")).text

    after = (count("validate", "200"), count("activate", "422"), count("activate", "201"))
    assert [b - a for a, b in zip(before, after, strict=True)] == [1, 1, 1]
    assert 'gateway_license_api_requests_total{code="201",endpoint="activate"}' in scrape


def test_every_route_is_registered_once(
    settings_factory: Callable[..., Settings], catalog: Catalog
) -> None:
    # A route listed twice (a merge kept both copies) hides which one serves and makes the
    # route-walking tests (the 1 GB POST per route) run twice over the same handler.
    app = create_app(settings_factory(), catalog=catalog, providers={}, run_migrations=False)
    routes = Counter(
        (route.path, method)
        for route in app.routes
        if isinstance(route, Route)
        for method in sorted(route.methods or ())
    )
    assert [key for key, n in routes.items() if n > 1] == []
