"""The apply path through `POST /webhooks/{provider}`: state machine, integrity, issuing."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import sqlite3
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from starlette.applications import Starlette

from config.catalog import Catalog
from config.settings import Settings
from gateway.cli import main
from gateway.db.models import (
    EmailStatus,
    InboxEvent,
    InboxOutcome,
    License,
    LicenseStatus,
    Order,
    OrderStatus,
    OutboxEmail,
)
from gateway.licenses.keys import ALPHABET
from providers.errors import ProviderUnavailable
from providers.events import PaymentEvent, ProviderName
from sandbox.provider import FakeProvider
from tests.support import dbutil
from tests.support.app import running
from tests.support.issuer import BUYER, deliver, event, fake_gateway, new_order, results

SettingsFactory = Callable[..., Settings]
KEY_RE = re.compile(rf"^[{ALPHABET}]{{4}}(-[{ALPHABET}]{{4}}){{3}}$")


async def test_one_settle_issues_one_license_with_catalog_entitlements_and_one_email(
    app: Starlette, fake: FakeProvider, catalog: Catalog
) -> None:
    async with running(app) as client:
        order = await new_order(catalog, product="enterprise")

        resp = await deliver(client, fake, event(order))

        assert results(resp) == ["applied"]
        saved = await Order.get(id=order.id)
        assert saved.status == OrderStatus.SETTLED
        assert saved.settled_at is not None
        lic = await License.get(order_id=order.id)
        assert KEY_RE.match(lic.key)
        assert (lic.tier, lic.addons, lic.seat_limit) == (
            "enterprise",
            ["tri-agent-system", "advanced-models", "enterprise-features"],
            25,
        )
        assert (lic.product_id, lic.buyer_email, lic.status) == (
            "enterprise",
            BUYER,
            LicenseStatus.ACTIVE,
        )
        email = await OutboxEmail.get(order_id=order.id)
        assert (email.kind, email.to_address, email.status) == ("license", BUYER, "pending")
        assert lic.key in email.body_text
        assert lic.key in email.body_html
        assert f"/orders/{order.id}?token={order.status_token}" in email.body_text
        inbox = await InboxEvent.get(dedupe_key=f"evt_settled_{order.id}")
        assert inbox.outcome == InboxOutcome.APPLIED
        assert inbox.order_id == order.id


async def test_duplicate_settle_is_answered_200_and_issues_nothing_more(
    app: Starlette, fake: FakeProvider, catalog: Catalog
) -> None:
    async with running(app) as client:
        order = await new_order(catalog)
        assert results(await deliver(client, fake, event(order))) == ["applied"]
        key = (await License.get(order_id=order.id)).key

        again = await deliver(client, fake, event(order))

        assert again.status_code == 200
        assert results(again) == ["duplicate"]
        assert [lic.key for lic in await License.filter(order_id=order.id)] == [key]
        assert await OutboxEmail.filter(order_id=order.id).count() == 1
        assert await InboxEvent.filter(order_id=order.id).count() == 1


async def test_pending_then_settled_walks_the_state_machine_forward(
    app: Starlette, fake: FakeProvider, catalog: Catalog
) -> None:
    async with running(app) as client:
        order = await new_order(catalog)

        assert results(await deliver(client, fake, event(order, "pending"))) == ["applied"]
        assert (await Order.get(id=order.id)).status == OrderStatus.PENDING
        assert await License.filter(order_id=order.id).count() == 0

        assert results(await deliver(client, fake, event(order))) == ["applied"]
        assert (await Order.get(id=order.id)).status == OrderStatus.SETTLED
        assert await License.filter(order_id=order.id).count() == 1


@pytest.mark.parametrize("late", ["pending", "failed"])
async def test_late_pending_or_failed_after_settled_does_not_regress(
    app: Starlette, fake: FakeProvider, catalog: Catalog, late: str
) -> None:
    async with running(app) as client:
        order = await new_order(catalog)
        await deliver(client, fake, event(order))

        resp = await deliver(client, fake, event(order, late))

        assert results(resp) == ["noop"]
        assert (await Order.get(id=order.id)).status == OrderStatus.SETTLED
        assert (await License.get(order_id=order.id)).status == LicenseStatus.ACTIVE
        inbox = await InboxEvent.get(dedupe_key=f"evt_{late}_{order.id}")
        assert inbox.outcome == InboxOutcome.NOOP


async def test_settlement_after_failure_or_expiry_still_settles(
    app: Starlette, fake: FakeProvider, catalog: Catalog
) -> None:
    async with running(app) as client:
        order = await new_order(catalog)
        assert results(await deliver(client, fake, event(order, "failed"))) == ["applied"]
        assert (await Order.get(id=order.id)).status == OrderStatus.FAILED
        # a late "pending" must not resurrect a failed order either
        assert results(await deliver(client, fake, event(order, "pending"))) == ["noop"]

        assert results(await deliver(client, fake, event(order))) == ["applied"]

        assert (await Order.get(id=order.id)).status == OrderStatus.SETTLED
        assert await License.filter(order_id=order.id).count() == 1


async def test_reversal_after_settle_revokes_license_with_reason_and_time(
    app: Starlette, fake: FakeProvider, catalog: Catalog
) -> None:
    async with running(app) as client:
        order = await new_order(catalog)
        await deliver(client, fake, event(order))

        resp = await deliver(client, fake, event(order, "reversed", reason="charge refunded"))

        assert results(resp) == ["applied"]
        assert (await Order.get(id=order.id)).status == OrderStatus.REVERSED
        lic = await License.get(order_id=order.id)
        assert lic.status == LicenseStatus.REVOKED
        assert lic.revoke_reason == "charge refunded"
        assert lic.revoked_at is not None
        # and a redelivered settlement cannot bring the license back
        again = await deliver(client, fake, event(order, dedupe_key="evt_other_settle"))
        assert results(again) == ["noop"]
        assert (await License.get(order_id=order.id)).status == LicenseStatus.REVOKED


async def test_refund_before_settle_arrives_ends_reversed_without_active_license(
    app: Starlette, fake: FakeProvider, catalog: Catalog
) -> None:
    async with running(app) as client:
        order = await new_order(catalog)

        assert results(await deliver(client, fake, event(order, "reversed"))) == ["applied"]
        assert results(await deliver(client, fake, event(order))) == ["noop"]

        assert (await Order.get(id=order.id)).status == OrderStatus.REVERSED
        assert await License.filter(order_id=order.id, status=LicenseStatus.ACTIVE).count() == 0
        assert await OutboxEmail.filter(order_id=order.id).count() == 0


async def test_overpayment_still_settles(
    app: Starlette, fake: FakeProvider, catalog: Catalog
) -> None:
    async with running(app) as client:
        order = await new_order(catalog)

        resp = await deliver(client, fake, event(order, amount_minor=order.amount_minor + 1))

        assert results(resp) == ["applied"]
        assert await License.filter(order_id=order.id).count() == 1


@pytest.mark.parametrize(
    ("change", "reason", "status"),
    [
        # money on the order's own checkout that does not match: the order needs a human
        pytest.param(
            {"amount_minor": 998}, "paid 998", "needs_review", id="short-by-one-minor-unit"
        ),
        pytest.param({"currency": "EUR"}, "currency EUR", "needs_review", id="wrong-currency"),
        # someone else's checkout naming our order: recorded, the order left untouched
        pytest.param(
            {"provider_ref": "ref_someone_else"}, "event is for", "created", id="wrong-ref"
        ),
    ],
)
async def test_mismatched_settlement_is_parked_and_issues_nothing(
    app: Starlette,
    fake: FakeProvider,
    catalog: Catalog,
    caplog: pytest.LogCaptureFixture,
    change: dict[str, Any],
    reason: str,
    status: str,
) -> None:
    async with running(app) as client:
        order = await new_order(catalog)  # pro: 9.99 USD = 999 minor units
        assert order.amount_minor == 999

        with caplog.at_level(logging.WARNING, logger="gateway.payments.apply"):
            resp = await deliver(client, fake, event(order, **change))

        assert results(resp) == ["parked"]
        saved = await Order.get(id=order.id)
        assert saved.status == status
        if status == "needs_review":
            assert saved.review_reason is not None
            assert reason in saved.review_reason
        else:
            assert saved.review_reason is None
        assert await License.filter(order_id=order.id).count() == 0
        assert await OutboxEmail.filter(order_id=order.id).count() == 0
        inbox = await InboxEvent.get(order_id=order.id)
        assert inbox.outcome == InboxOutcome.PARKED
        assert reason in inbox.detail
        parked = [r.getMessage() for r in caplog.records if "parked" in r.getMessage()]
        assert len(parked) == 1
        assert order.id in parked[0]
        assert "stripe" in parked[0]
        assert reason in parked[0]


async def test_unknown_order_id_is_parked_and_issues_nothing(
    app: Starlette, fake: FakeProvider, catalog: Catalog
) -> None:
    async with running(app) as client:
        order = await new_order(catalog)
        # our id shape, but no such order (ids in other shapes are not ours: ignored)
        ghost = event(order, order_id="ord_" + "f" * 20, dedupe_key="evt_ghost")

        resp = await deliver(client, fake, ghost)

        assert results(resp) == ["parked"]
        assert await License.all().count() == 0
        assert await OutboxEmail.all().count() == 0
        inbox = await InboxEvent.get(dedupe_key="evt_ghost")
        assert inbox.outcome == InboxOutcome.PARKED
        assert inbox.order_id == "ord_" + "f" * 20
        assert (await Order.get(id=order.id)).status == OrderStatus.CREATED


async def test_settlement_from_another_provider_than_the_order_is_parked(
    app: Starlette, fake: FakeProvider, catalog: Catalog
) -> None:
    async with running(app) as client:
        order = await new_order(catalog, provider=ProviderName.BTCPAY)

        resp = await deliver(client, fake, event(order))  # the fake speaks as stripe

        assert results(resp) == ["parked"]
        assert await License.all().count() == 0
        assert (await Order.get(id=order.id)).status == OrderStatus.CREATED


async def test_license_key_clash_retries_with_a_new_key_instead_of_failing(
    app: Starlette, fake: FakeProvider, catalog: Catalog
) -> None:
    async with running(app) as client:
        first, second = await new_order(catalog), await new_order(catalog)
        await deliver(client, fake, event(first))
        taken = (await License.get(order_id=first.id)).key
        keys = iter([taken, taken, "ZZZZ-ZZZZ-ZZZZ-ZZZZ"])
        app.state.gateway.applier.new_key = lambda: next(keys)

        resp = await deliver(client, fake, event(second))

        assert results(resp) == ["applied"]
        assert (await License.get(order_id=second.id)).key == "ZZZZ-ZZZZ-ZZZZ-ZZZZ"
        assert (await License.get(order_id=first.id)).key == taken
        email = await OutboxEmail.get(order_id=second.id)
        assert email.status == EmailStatus.PENDING
        assert "ZZZZ-ZZZZ-ZZZZ-ZZZZ" in email.body_text


async def test_several_events_in_one_delivery_are_applied_in_order(
    app: Starlette, fake: FakeProvider, catalog: Catalog
) -> None:
    async with running(app) as client:
        order = await new_order(catalog)

        resp = await deliver(client, fake, event(order, "pending"), event(order), event(order))

        assert results(resp) == ["applied", "applied", "duplicate"]
        assert await License.filter(order_id=order.id).count() == 1


# --- the database fails in the middle of a webhook -------------------------------------


async def _locked_order_backend_pid(conn: asyncpg.Connection) -> int:
    """The gateway's backend once it waits on the order row lock we hold."""
    for _ in range(200):
        pid = await conn.fetchval(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND wait_event_type = 'Lock'"
        )
        if pid is not None:
            return int(pid)
        await asyncio.sleep(0.025)
    raise AssertionError("the webhook never reached the order lock")


async def test_postgres_connection_lost_mid_webhook_answers_503_and_writes_nothing(
    pg_database: str, settings_factory: SettingsFactory, catalog: Catalog
) -> None:
    db_url = pg_database
    await dbutil.truncate_pg(db_url)
    app, fake = fake_gateway(db_url, settings_factory, catalog)
    async with running(app) as client:
        order = await new_order(catalog)
        # given the webhook's transaction has written its inbox row and waits on the order
        # row (which we hold locked from another session)
        admin = await asyncpg.connect(db_url)
        try:
            tx = admin.transaction()
            await tx.start()
            await admin.execute("SELECT 1 FROM orders WHERE id = $1 FOR UPDATE", order.id)
            pending = asyncio.create_task(deliver(client, fake, event(order)))
            victim = await _locked_order_backend_pid(admin)
            # when its database connection dies mid-transaction
            assert await admin.fetchval("SELECT pg_terminate_backend($1)", victim)
            await tx.rollback()
            resp = await asyncio.wait_for(pending, timeout=30)
        finally:
            await admin.close()

        # then the provider is told to retry, and nothing of the event was kept
        assert resp.status_code == 503, resp.text
        assert resp.json()["error"] == "database_unavailable"
        assert await InboxEvent.all().count() == 0
        assert await License.all().count() == 0
        assert await OutboxEmail.all().count() == 0
        assert (await Order.get(id=order.id)).status == OrderStatus.CREATED
        # and the retried delivery is not mistaken for a duplicate
        assert results(await deliver(client, fake, event(order))) == ["applied"]
        assert await License.filter(order_id=order.id).count() == 1


async def test_sqlite_database_locked_by_another_process_answers_503_and_writes_nothing(
    sqlite_template: Path,
    tmp_path: Path,
    settings_factory: SettingsFactory,
    catalog: Catalog,
) -> None:
    db_file = tmp_path / "locked.sqlite3"
    db_url = dbutil.sqlite_copy(sqlite_template, db_file) + "?busy_timeout=200"
    app, fake = fake_gateway(db_url, settings_factory, catalog)
    async with running(app) as client:
        order = await new_order(catalog)
        # given another process holds the write lock (a backup, a stuck migration)
        other = sqlite3.connect(db_file, isolation_level=None)
        try:
            other.execute("BEGIN EXCLUSIVE")
            # when a settlement arrives
            resp = await deliver(client, fake, event(order))
            other.execute("ROLLBACK")
        finally:
            other.close()

        # then the provider is told to retry, and nothing of the event was kept
        assert resp.status_code == 503, resp.text
        assert await InboxEvent.all().count() == 0
        assert await License.all().count() == 0
        assert await OutboxEmail.all().count() == 0
        # and the retried delivery is applied, not taken for a duplicate
        assert results(await deliver(client, fake, event(order))) == ["applied"]
        assert await License.filter(order_id=order.id).count() == 1


def test_review_cli_lists_parked_events_with_order_provider_reason_and_time(
    db_url: str,
    settings_factory: SettingsFactory,
    catalog: Catalog,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    async def given_a_short_payment_and_a_good_one() -> tuple[str, str]:
        app, fake = fake_gateway(db_url, settings_factory, catalog)
        async with running(app) as client:
            short, good = await new_order(catalog), await new_order(catalog)
            await deliver(client, fake, event(short, amount_minor=998))
            await deliver(client, fake, event(good))
            return short.id, good.id

    short_id, good_id = asyncio.run(given_a_short_payment_and_a_good_one())
    monkeypatch.chdir(tmp_path)  # no stray .env
    # The CLI's logging.basicConfig must not leave a handler on a stream pytest closes.
    monkeypatch.setattr(logging.getLogger(), "handlers", [logging.NullHandler()])
    monkeypatch.setenv("GATEWAY_CONFIG_FILE", "")
    monkeypatch.setenv("GATEWAY_DATABASE_URL", db_url)
    monkeypatch.setenv("GATEWAY_DATA_DIR", str(tmp_path / "data"))

    assert main(["review", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert main(["review"]) == 0
    table = capsys.readouterr().out

    order_row, event_row = rows
    assert (order_row["type"], order_row["order_id"], order_row["kind"]) == (
        "order",
        short_id,
        "needs_review",
    )
    assert order_row["reason"].startswith("paid 998 USD")
    assert (event_row["provider"], event_row["order_id"], event_row["kind"]) == (
        "stripe",
        short_id,
        "settled",
    )
    assert event_row["reason"].startswith("paid 998 USD")
    assert event_row["received_at"].startswith("20")
    assert good_id not in table
    assert "1 order(s) in needs_review, 1 parked event(s)" in table


class _FlakyProvider(FakeProvider):
    """Refuses the first delivery as a provider does when its re-check API is down."""

    def __init__(self) -> None:
        super().__init__(ProviderName.STRIPE)
        self.refusals = 1

    async def parse_webhook(self, body: bytes, headers: Mapping[str, str]) -> list[PaymentEvent]:
        if self.refusals:
            self.refusals -= 1
            raise ProviderUnavailable("cannot confirm the payment right now")
        return await super().parse_webhook(body, headers)


async def test_refused_delivery_answers_503_and_does_not_occupy_the_dedupe_slot(
    db_url: str, settings_factory: SettingsFactory, catalog: Catalog
) -> None:
    app, fake = fake_gateway(db_url, settings_factory, catalog, fake=_FlakyProvider())
    async with running(app) as client:
        order = await new_order(catalog)

        refused = await deliver(client, fake, event(order))
        assert refused.status_code == 503
        assert await InboxEvent.all().count() == 0

        assert results(await deliver(client, fake, event(order))) == ["applied"]
        assert await License.filter(order_id=order.id).count() == 1


async def test_settlement_without_a_payment_id_binds_reversals_to_its_checkout(
    app: Starlette, fake: FakeProvider, catalog: Catalog
) -> None:
    # given a provider whose checkout is the payment (a BTCPay invoice): no payment_ref
    async with running(app) as client:
        order = await new_order(catalog)
        await deliver(client, fake, event(order, payment_ref=None))
        assert (await Order.get(id=order.id)).payment_ref == order.provider_ref

        # a reversal of another invoice naming this order changes nothing
        other = event(order, "reversed", dedupe_key="evt_other", payment_ref="inv_other")
        assert results(await deliver(client, fake, other)) == ["parked"]
        assert (await License.get(order_id=order.id)).status == LicenseStatus.ACTIVE

        # while the reversal of its own invoice revokes
        own = event(order, "reversed", payment_ref=order.provider_ref)
        assert results(await deliver(client, fake, own)) == ["applied"]
        assert (await License.get(order_id=order.id)).status == LicenseStatus.REVOKED


async def test_reinstatement_never_settles_an_order_that_was_reversed_before_it_settled(
    app: Starlette, fake: FakeProvider, catalog: Catalog
) -> None:
    async with running(app) as client:
        order = await new_order(catalog)
        assert results(await deliver(client, fake, event(order, "reversed"))) == ["applied"]

        resp = await deliver(client, fake, event(order, "reinstated"))

        assert results(resp) == ["parked"]
        assert (await Order.get(id=order.id)).status == OrderStatus.REVERSED
        assert await License.filter(order_id=order.id).count() == 0
