"""The operator commands against a real database (SQLite and PostgreSQL): orders, licenses,
outbox. Each runs through click in this process, as `checkout-gateway ...` would, and its
text and `--json` output is checked."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from config.catalog import Catalog
from config.settings import Settings
from gateway.app import create_app
from gateway.cli import cli
from gateway.db import database as db
from gateway.db.models import EmailStatus, License, LicenseStatus, Order, OrderStatus, OutboxEmail
from gateway.licenses.keys import mask_key
from gateway.mail.outbox import Mailer
from gateway.payments.apply import Applier
from providers.events import PaymentPending, PaymentSettled, ProviderName
from tests.support.app import running
from tests.support.issuer import new_order

pytestmark = pytest.mark.db


@dataclass
class Seeded:
    settled: str  # a Stripe order, settled, with its license and a sent email
    key: str
    license_id: int
    pending: str  # a BTCPay order with a payment seen but not final (a "stuck" one)
    created: str  # a Stripe order nobody paid
    dead_email: int  # the settled order's license email, given up


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    # The commands install their own log handler on the root logger, as a process would.
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def env(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.chdir(tmp_path)  # no developer .env
    return {
        "GATEWAY_DATABASE_URL": db_url,
        "GATEWAY_CONFIG_FILE": "",
        "GATEWAY_DATA_DIR": str(tmp_path / "data"),
        "GATEWAY_MAIL_BACKEND": "file",
        "GATEWAY_MAIL_DIR": str(tmp_path / "mail"),
        "GATEWAY_PUBLIC_URL": "http://gateway.test",
    }


def run(env: dict[str, str], *args: str) -> Result:
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def run_json(env: dict[str, str], *args: str) -> Any:
    result = run(env, *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


async def _seed(settings: Settings, catalog: Catalog) -> Seeded:
    await db.open_db(settings, run_migrations=False)
    try:
        applier = Applier(catalog, public_url=settings.public_url)
        settled = await new_order(catalog)
        await applier.apply(
            PaymentSettled(
                provider=ProviderName.STRIPE,
                provider_ref=str(settled.provider_ref),
                order_id=settled.id,
                dedupe_key=f"evt_settle_{settled.id}",
                occurred_at=datetime.now(UTC),
                amount_minor=settled.amount_minor,
                currency=settled.currency,
            ),
            b"{}",
        )
        pending = await new_order(catalog, provider=ProviderName.BTCPAY)
        await applier.apply(
            PaymentPending(
                provider=ProviderName.BTCPAY,
                provider_ref=str(pending.provider_ref),
                order_id=pending.id,
                dedupe_key=f"inv:{pending.id}:InvoiceProcessing",
                occurred_at=datetime.now(UTC),
            ),
            b"{}",
        )
        created = await new_order(catalog)
        lic = await License.get(order_id=settled.id)
        email = await OutboxEmail.get(order_id=settled.id)
        await OutboxEmail.filter(id=email.id).update(
            status=EmailStatus.DEAD, attempts=20, last_error="SMTPRecipientsRefused: no"
        )
        return Seeded(settled.id, lic.key, lic.id, pending.id, created.id, email.id)
    finally:
        await db.close_db()


@pytest.fixture
def seeded(
    env: dict[str, str], settings_factory: Callable[..., Settings], catalog: Catalog
) -> Seeded:
    settings = settings_factory(database_url=env["GATEWAY_DATABASE_URL"])
    return asyncio.run(_seed(settings, catalog))


def _in_db(env: dict[str, str], settings_factory: Callable[..., Settings], work: Any) -> Any:
    async def go() -> Any:
        await db.open_db(
            settings_factory(database_url=env["GATEWAY_DATABASE_URL"]), run_migrations=False
        )
        try:
            return await work()
        finally:
            await db.close_db()

    return asyncio.run(go())


def test_orders_list_filters_and_json(env: dict[str, str], seeded: Seeded) -> None:
    everything = run_json(env, "orders", "list")
    settled = run_json(env, "orders", "list", "--status", "settled")
    btcpay = run_json(env, "orders", "list", "--provider", "btcpay")
    by_email = run_json(env, "orders", "list", "--email", "BUYER@example.com")
    future = run_json(env, "orders", "list", "--since", "2999-01-01")
    recent = run_json(env, "orders", "list", "--since", "1h")
    text = run(env, "orders", "list", "--status", "settled")

    assert {o["id"] for o in everything} == {seeded.settled, seeded.pending, seeded.created}
    assert [o["id"] for o in settled] == [seeded.settled]
    assert settled[0]["amount"] == "9.99 USD"
    assert [o["id"] for o in btcpay] == [seeded.pending]
    assert len(by_email) == 3
    assert future == []
    assert len(recent) == 3
    assert text.exit_code == 0
    assert seeded.settled in text.stdout
    assert seeded.created not in text.stdout


def test_orders_list_stuck_shows_paid_looking_orders_without_settlement(
    env: dict[str, str], seeded: Seeded
) -> None:
    stuck = run_json(env, "orders", "list", "--stuck")

    assert [o["id"] for o in stuck] == [seeded.pending]
    assert stuck[0]["status"] == "pending"


def test_orders_show_has_events_license_and_emails(env: dict[str, str], seeded: Seeded) -> None:
    doc = run_json(env, "orders", "show", seeded.settled)
    text = run(env, "orders", "show", seeded.settled)
    missing = run(env, "orders", "show", "ord_00000000000000000000")

    assert doc["status"] == "settled"
    assert [e["kind"] for e in doc["events"]] == ["settled"]
    assert doc["events"][0]["outcome"] == "applied"
    assert doc["license"]["key"] == seeded.key
    assert [m["status"] for m in doc["emails"]] == ["dead"]
    assert doc["status_url"].startswith(f"http://gateway.test/orders/{seeded.settled}?token=")
    assert text.exit_code == 0
    assert seeded.key in text.stdout  # the operator asked for this order
    assert "evt_settle_" in text.stdout
    assert missing.exit_code == 1
    assert "no order ord_00000000000000000000" in missing.output


def test_bad_since_is_one_clear_line(env: dict[str, str], seeded: Seeded) -> None:
    result = run(env, "orders", "list", "--since", "yesterday-ish")

    assert result.exit_code == 2
    assert "neither a date" in result.output
    assert "Traceback" not in result.output


def test_licenses_list_masks_keys_and_show_prints_it(env: dict[str, str], seeded: Seeded) -> None:
    listed = run_json(env, "licenses", "list")
    text = run(env, "licenses", "list")
    by_key = run_json(env, "licenses", "show", seeded.key.lower().replace("-", ""))
    by_order = run_json(env, "licenses", "show", seeded.settled)
    by_id = run(env, "licenses", "show", str(seeded.license_id))

    assert [lic["key"] for lic in listed] == [mask_key(seeded.key)]
    assert listed[0]["addons"] == ["advanced-models"]  # a list, as in the license API
    assert "addons         advanced-models\n" in by_id.stdout
    assert seeded.key not in text.stdout
    assert by_key["key"] == by_order["key"] == seeded.key
    assert by_key["status"] == "active"
    assert seeded.key in by_id.stdout


def test_licenses_revoke_and_reinstate_are_idempotent_and_logged(
    env: dict[str, str], seeded: Seeded, settings_factory: Callable[..., Settings]
) -> None:
    first = run(env, "licenses", "revoke", seeded.settled, "--reason", "chargeback")
    again = run(env, "licenses", "revoke", seeded.settled, "--reason", "chargeback")
    revoked = run_json(env, "licenses", "list", "--status", "revoked")
    back = run(env, "licenses", "reinstate", str(seeded.license_id))
    back_again = run(env, "licenses", "reinstate", str(seeded.license_id))

    assert first.exit_code == again.exit_code == back.exit_code == back_again.exit_code == 0
    assert "revoked" in first.stdout
    assert "already revoked" in again.stdout
    assert [lic["revoke_reason"] for lic in revoked] == ["chargeback"]
    assert "reinstated" in back.stdout
    assert "already active" in back_again.stdout
    assert "revoked by operator: chargeback" in first.stderr  # the log line
    for result in (first, again, back, back_again):
        assert seeded.key not in result.output
    lic = _in_db(env, settings_factory, lambda: License.get(id=seeded.license_id))
    assert lic.status is LicenseStatus.ACTIVE
    assert lic.revoke_reason is None


def test_licenses_resend_requeues_the_email_once(
    env: dict[str, str], seeded: Seeded, settings_factory: Callable[..., Settings]
) -> None:
    first = run(env, "licenses", "resend", seeded.key)
    again = run(env, "licenses", "resend", seeded.key)

    assert first.exit_code == again.exit_code == 0
    assert "queued" in first.stdout
    assert "already queued" in again.stdout
    email = _in_db(env, settings_factory, lambda: OutboxEmail.get(id=seeded.dead_email))
    assert email.status is EmailStatus.PENDING
    assert email.attempts == 0


def test_outbox_list_dead_and_retry(
    env: dict[str, str], seeded: Seeded, settings_factory: Callable[..., Settings]
) -> None:
    dead = run_json(env, "outbox", "list", "--dead")
    text = run(env, "outbox", "list", "--dead")
    retried = run(env, "outbox", "retry", "--all-dead")
    again = run(env, "outbox", "retry", str(seeded.dead_email))
    none_dead = run_json(env, "outbox", "list", "--dead")
    no_args = run(env, "outbox", "retry")

    assert [m["id"] for m in dead] == [seeded.dead_email]
    assert dead[0]["last_error"] == "SMTPRecipientsRefused: no"
    assert "SMTPRecipientsRefused" in text.stdout
    assert f"email {seeded.dead_email} to buyer@example.com queued again" in retried.stdout
    assert "already queued" in again.stdout
    assert none_dead == []
    assert no_args.exit_code == 2
    assert "--all-dead" in no_args.output


def test_licenses_comp_issues_a_working_license_without_payment(
    env: dict[str, str], settings_factory: Callable[..., Settings], catalog: Catalog
) -> None:
    args = ("licenses", "comp", "--product", "pro", "--email", "friend@example.com")
    who = ("--by", "alice", "--reason", "beta tester")
    doc = run_json(env, *args, *who)
    again = run(env, *args, *who)
    other = run_json(env, *args, "--by", "alice", "--reason", "conference prize")
    unknown = run(env, "licenses", "comp", "--product", "nope", "--email", "a@example.com", *who)

    # an order recorded as comp: settled, nothing paid, who and why on it
    async def check() -> tuple[Order, License, OutboxEmail]:
        order = await Order.get(id=doc["order_id"])
        return order, await License.get(order_id=order.id), await OutboxEmail.get(order=order)

    order, lic, email = _in_db(env, settings_factory, check)
    assert doc["created"] is True
    assert order.provider == "comp"
    assert order.status is OrderStatus.SETTLED
    assert order.amount_minor == 0
    assert order.notes == "comp by alice: beta tester"
    assert lic.key == doc["key"]
    assert lic.status is LicenseStatus.ACTIVE
    assert (lic.tier, lic.seat_limit) == ("pro", catalog.get("pro").seats)  # type: ignore[union-attr]
    # the same command again issues nothing new; another reason is another comp
    assert again.exit_code == 0
    assert "already issued" in again.stdout
    assert other["created"] is True
    assert other["order_id"] != doc["order_id"]
    assert unknown.exit_code == 2
    assert "no product 'nope'" in unknown.output

    # the key is emailed (through the outbox sender) and shows on its order status page
    assert email.to_address == "friend@example.com"
    settings = settings_factory(
        database_url=env["GATEWAY_DATABASE_URL"], mail_dir=Path(env["GATEWAY_MAIL_DIR"])
    )

    async def deliver_and_view() -> dict[str, Any]:
        app = create_app(
            settings, catalog=catalog, providers={}, run_migrations=False, run_mailer=False
        )
        async with running(app) as client:
            sent = await Mailer(settings).run_once()
            assert sent.sent == 2  # the two comps' emails
            page = await client.get(doc["status_url"].removeprefix("http://gateway.test"))
        return dict(page.json())

    page = asyncio.run(deliver_and_view())
    assert page["license"]["key"] == doc["key"]
    assert page["status"] == "settled"
    mails = [p.read_text() for p in Path(env["GATEWAY_MAIL_DIR"]).glob("*.eml")]
    assert any(doc["key"] in m for m in mails)


def test_orders_list_stuck_includes_a_parked_underpaid_settle(
    env: dict[str, str],
    seeded: Seeded,
    settings_factory: Callable[..., Settings],
    catalog: Catalog,
) -> None:
    # given an order whose settle paid too little (parked for review, nothing issued)
    async def underpaid() -> str:
        order = await new_order(catalog)
        await Applier(catalog, public_url="http://gateway.test").apply(
            PaymentSettled(
                provider=ProviderName.STRIPE,
                provider_ref=str(order.provider_ref),
                order_id=order.id,
                dedupe_key=f"evt_short_{order.id}",
                occurred_at=datetime.now(UTC),
                amount_minor=order.amount_minor - 1,
                currency=order.currency,
            ),
            b"{}",
        )
        return order.id

    parked = _in_db(env, settings_factory, underpaid)

    stuck = run_json(env, "orders", "list", "--stuck")

    assert {o["id"] for o in stuck} == {seeded.pending, parked}


def test_reconcile_settles_a_stuck_order_and_exits_1_while_stripe_is_down(
    env: dict[str, str], settings_factory: Callable[..., Settings], catalog: Catalog
) -> None:
    from datetime import timedelta

    from sandbox.btcpay.server import FakeServerThread
    from sandbox.stripe.api import FakeStripe
    from tests.support.procs import free_port
    from tests.support.stripe import paid_without_webhook, stripe_gateway

    # given a Stripe order paid at (fake) Stripe an hour ago whose webhook never arrived
    fake = FakeStripe()

    async def seed() -> str:
        async with stripe_gateway(fake, env["GATEWAY_DATABASE_URL"], settings_factory, catalog) as (
            client,
            _,
        ):
            return await paid_without_webhook(client, fake, timedelta(hours=1))

    order_id = asyncio.run(seed())
    stripe = {
        "GATEWAY_STRIPE__ENABLED": "true",
        "GATEWAY_STRIPE__SECRET_KEY": fake.api_key,
        "GATEWAY_STRIPE__WEBHOOK_SECRET": "whsec_cli",
        "GATEWAY_BTCPAY__ENABLED": "false",
    }
    server = FakeServerThread(fake.app)
    up = env | stripe | {"GATEWAY_STRIPE__API_BASE": server.start()}
    try:
        # when the operator runs one pass (text), then another (JSON)
        text = run(up, "reconcile")
        again = run_json(up, "reconcile")
    finally:
        server.stop()
    # and, with another such order, a pass while Stripe is unreachable
    asyncio.run(seed())
    down = up | {"GATEWAY_STRIPE__API_BASE": f"http://127.0.0.1:{free_port()}"}
    unreachable = run(down, "reconcile", "--json")

    # then the first pass settles the order and names it, the second finds nothing left,
    # and the one without Stripe exits 1 naming it (its order is retried later)
    assert text.exit_code == 0, text.output
    assert order_id in text.stdout
    assert "polled                1" in text.stdout
    assert again["changed"] == []
    assert again["provider_unavailable"] == []
    assert unreachable.exit_code == 1
    assert json.loads(unreachable.stdout)["provider_unavailable"] == ["stripe"]
    order = _in_db(up, settings_factory, lambda: Order.get(id=order_id))
    assert order.status == OrderStatus.SETTLED
