"""needs_review everywhere (issue 8 item 10): the order JSON says so, `review list` shows
it, and `review resolve` issues the license exactly once or dismisses the order."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from config.catalog import Catalog
from config.settings import Settings
from gateway.cli import main
from gateway.db.models import License, Order, OrderStatus, OutboxEmail
from tests.support.app import running
from tests.support.issuer import deliver, event, fake_gateway, new_order

SettingsFactory = Callable[..., Settings]


@pytest.fixture
def cli_env(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no stray .env
    monkeypatch.setattr(logging.getLogger(), "handlers", [logging.NullHandler()])
    monkeypatch.setenv("GATEWAY_CONFIG_FILE", "")
    monkeypatch.setenv("GATEWAY_DATABASE_URL", db_url)
    monkeypatch.setenv("GATEWAY_DATA_DIR", str(tmp_path / "data"))


def _order_json(
    db_url: str, settings_factory: SettingsFactory, catalog: Catalog, order_id: str
) -> dict[str, object]:
    async def get() -> dict[str, object]:
        app, _ = fake_gateway(db_url, settings_factory, catalog)
        async with running(app) as client:
            order = await Order.get(id=order_id)
            resp = await client.get(f"/orders/{order.id}", params={"token": order.status_token})
            assert resp.status_code == 200
            html = await client.get(
                f"/orders/{order.id}",
                params={"token": order.status_token},
                headers={"accept": "text/html"},
            )
            doc: dict[str, object] = resp.json()
            doc["_html"] = html.text
            doc["_licenses"] = await License.filter(order_id=order.id).count()
            doc["_emails"] = await OutboxEmail.filter(order_id=order.id).count()
            return doc

    return asyncio.run(get())


def _needs_review_order(db_url: str, settings_factory: SettingsFactory, catalog: Catalog) -> str:
    async def given() -> str:
        app, fake = fake_gateway(db_url, settings_factory, catalog)
        async with running(app) as client:
            order = await new_order(catalog)
            resp = await deliver(client, fake, event(order, amount_minor=998))
            assert resp.json()["events"][0]["result"] == "parked"
            return order.id

    return asyncio.run(given())


def test_underpaid_order_shows_needs_review_and_issue_after_review_gives_one_license(
    db_url: str,
    settings_factory: SettingsFactory,
    catalog: Catalog,
    cli_env: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    order_id = _needs_review_order(db_url, settings_factory, catalog)
    before = _order_json(db_url, settings_factory, catalog, order_id)
    assert before["status"] == "needs_review"
    assert before["license"] is None
    assert "Your payment needs a manual check" in str(before["_html"])

    # when the operator checked the payment and issues, twice (a double-run script)
    assert (
        main(["review", "resolve", order_id, "--issue", "--reason", "paid the rest by wire"]) == 0
    )
    capsys.readouterr()
    assert main(["review", "resolve", order_id, "--issue", "--json"]) == 1
    second = json.loads(capsys.readouterr().out)

    # then exactly one license and one email exist, and the buyer sees the key
    assert second["result"] == "noop"
    after = _order_json(db_url, settings_factory, catalog, order_id)
    assert after["status"] == "settled"
    assert after["license"] is not None
    assert (after["_licenses"], after["_emails"]) == (1, 1)
    # and nothing is left to review
    assert main(["review", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_dismissed_order_fails_with_the_reason_and_issues_nothing(
    db_url: str,
    settings_factory: SettingsFactory,
    catalog: Catalog,
    cli_env: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    order_id = _needs_review_order(db_url, settings_factory, catalog)

    assert main(["review", "resolve", order_id, "--dismiss", "--reason", "refunded"]) == 0

    after = _order_json(db_url, settings_factory, catalog, order_id)
    assert (after["status"], after["license"], after["_licenses"]) == ("failed", None, 0)

    async def reason() -> str | None:
        app, _ = fake_gateway(db_url, settings_factory, catalog)
        async with running(app):
            return (await Order.get(id=order_id)).review_reason

    assert asyncio.run(reason()) == "dismissed after review: refunded"
    # an order not in review cannot be resolved
    capsys.readouterr()
    assert main(["review", "resolve", order_id, "--issue"]) == 1
    assert main(["review", "resolve", "ord_not_an_order", "--issue"]) == 1


def test_needs_review_event_parks_the_order_for_a_human(
    db_url: str, settings_factory: SettingsFactory, catalog: Catalog
) -> None:
    async def run() -> None:
        app, fake = fake_gateway(db_url, settings_factory, catalog)
        async with running(app) as client:
            order = await new_order(catalog, status=OrderStatus.FAILED)
            hint = event(order, "needs_review", reason="paid in full after expiry")

            resp = await deliver(client, fake, hint)

            assert resp.json()["events"][0]["result"] == "applied"
            saved = await Order.get(id=order.id)
            assert saved.status == OrderStatus.NEEDS_REVIEW
            assert saved.review_reason == "paid in full after expiry"
            assert await License.filter(order_id=order.id).count() == 0

    asyncio.run(run())


def test_license_issued_after_review_is_still_revoked_by_a_refund_of_that_payment(
    db_url: str,
    settings_factory: SettingsFactory,
    catalog: Catalog,
    cli_env: None,
) -> None:
    order_id = _needs_review_order(db_url, settings_factory, catalog)
    assert main(["review", "resolve", order_id, "--issue"]) == 0

    async def refund() -> str:
        app, fake = fake_gateway(db_url, settings_factory, catalog)
        async with running(app) as client:
            order = await Order.get(id=order_id)
            await deliver(client, fake, event(order, "reversed"))
            return (await License.get(order_id=order_id)).status.value

    assert asyncio.run(refund()) == "revoked"


def test_needs_review_order_settled_by_its_provider_issues_once_and_leaves_the_review_list(
    db_url: str,
    settings_factory: SettingsFactory,
    catalog: Catalog,
    cli_env: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # given an underpaid order in needs_review, with its parked settlement on the list
    order_id = _needs_review_order(db_url, settings_factory, catalog)

    async def settle_at_provider() -> list[str]:
        app, fake = fake_gateway(db_url, settings_factory, catalog)
        async with running(app) as client:
            order = await Order.get(id=order_id)
            # when the seller marks it settled at the provider after checking (a new fact,
            # a new event id), and the provider delivers that twice
            full = event(order, dedupe_key=f"evt_marked_{order.id}", notes=["manually marked"])
            first = await deliver(client, fake, full)
            again = await deliver(client, fake, full)
            return [first.json()["events"][0]["result"], again.json()["events"][0]["result"]]

    assert asyncio.run(settle_at_provider()) == ["applied", "duplicate"]

    # then one license and one email, as for any settlement
    after = _order_json(db_url, settings_factory, catalog, order_id)
    assert after["status"] == "settled"
    assert (after["_licenses"], after["_emails"]) == (1, 1)
    # and the decision is made: nothing of this order is left to review, nor to resolve
    capsys.readouterr()
    assert main(["review", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert main(["review", "resolve", order_id, "--issue"]) == 1
    assert _order_json(db_url, settings_factory, catalog, order_id)["_licenses"] == 1
