"""Lost keys: `/licenses/recover` queues one email listing the buyer's licenses, answers
the same for unknown addresses, is rate-limited, and leaves the license email exactly-once."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from starlette.applications import Starlette

from config.catalog import Catalog
from config.settings import Settings
from gateway.db.models import OutboxEmail
from gateway.licenses.issuing import LICENSE_EMAIL
from gateway.mail.outbox import Mailer
from gateway.pages.recover import recover_kind
from sandbox.provider import FakeProvider
from tests.support.app import running
from tests.support.issuer import BUYER, deliver, event, fake_gateway, new_order

SettingsFactory = Callable[..., Settings]


def _answer_text(html: str) -> str:
    # The confirmation repeats the address typed; everything else must be identical.
    return html.replace("nobody@example.com", "X").replace("BUYER@example.com", "X")


async def test_known_and_unknown_email_get_the_same_answer_and_only_known_get_mail(
    app: Starlette, fake: FakeProvider, catalog: Catalog
) -> None:
    async with running(app) as client:
        # given a buyer with two licenses
        first, second = await new_order(catalog), await new_order(catalog, product="enterprise")
        await deliver(client, fake, event(first), event(second))

        # when the buyer and a stranger ask for their licenses
        known = await client.post("/licenses/recover", data={"email": "BUYER@example.com"})
        unknown = await client.post("/licenses/recover", data={"email": "nobody@example.com"})

        # then both read the same, and one recovery email is queued for the buyer only
        rows = await OutboxEmail.filter(kind__startswith="recover-")
        license_rows = await OutboxEmail.filter(kind=LICENSE_EMAIL).count()
    assert known.status_code == unknown.status_code == 200
    assert _answer_text(known.text) == _answer_text(unknown.text)
    assert "we have sent that address an email" in known.text
    assert len(rows) == 1
    mail = rows[0]
    assert mail.to_address == BUYER
    for order in (first, second):
        assert f"/orders/{order.id}?token={order.status_token}" in mail.body_text
    assert "Local AI Studio Pro" in mail.body_text
    assert "Tri-Agent System" in mail.body_text
    assert license_rows == 2  # one license email per order, untouched


async def test_repeated_requests_queue_one_email_per_window_and_the_mailer_sends_it(
    app: Starlette, fake: FakeProvider, catalog: Catalog
) -> None:
    settings = app.state.gateway.settings
    async with running(app) as client:
        order = await new_order(catalog)
        await deliver(client, fake, event(order))
        for _ in range(2):
            resp = await client.post("/licenses/recover", data={"email": BUYER})
            assert resp.status_code == 200
        queued = await OutboxEmail.filter(kind__startswith="recover-").count()
        run = await Mailer(settings).run_once()
    assert queued == 1
    assert run.sent == 2  # the license email and the one recovery email
    files = sorted(settings.resolved_mail_dir.glob("*.eml"))
    assert any(b"Your licenses from" in f.read_bytes() for f in files)


async def test_recover_is_rate_limited_per_email(
    db_url: str, settings_factory: SettingsFactory, catalog: Catalog
) -> None:
    app, _ = fake_gateway(db_url, settings_factory, catalog, limits={"recover_per_email": "2/hour"})
    async with running(app) as client:
        answers = [
            await client.post("/licenses/recover", data={"email": "x@example.com"})
            for _ in range(3)
        ]
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert "Please wait" in answers[2].text
    assert answers[2].headers["retry-after"].isdigit()


async def test_invalid_email_is_explained_on_the_form(app: Starlette) -> None:
    async with running(app) as client:
        form = await client.get("/licenses/recover")
        bad = await client.post("/licenses/recover", data={"email": "nope"})
    assert '<label for="email">' in form.text
    assert bad.status_code == 422
    assert "does not look right" in bad.text


async def test_recover_posted_from_another_site_is_refused_and_sends_nothing(
    db_url: str, settings_factory: SettingsFactory, catalog: Catalog
) -> None:
    # given a buyer with a license, and a seller site allowed to post forms
    app, fake = fake_gateway(
        db_url, settings_factory, catalog, allowed_origins=["https://seller.example"]
    )
    async with running(app) as client:
        await deliver(client, fake, event(await new_order(catalog)))
        form = {"email": BUYER}

        # when another site posts the form (Origin, or only a Referer), and the allowed one
        evil = await client.post(
            "/licenses/recover", data=form, headers={"origin": "https://evil.example"}
        )
        by_referer = await client.post(
            "/licenses/recover", data=form, headers={"referer": "https://evil.example/page"}
        )
        refused = await OutboxEmail.filter(kind__startswith="recover-").count()
        seller = await client.post(
            "/licenses/recover", data=form, headers={"origin": "https://seller.example"}
        )
        queued = await OutboxEmail.filter(kind__startswith="recover-").count()

    # then the foreign posts get a page in words and queue nothing; the seller's works
    assert evil.status_code == by_referer.status_code == 403
    assert "sent from another website" in evil.text
    assert evil.headers["content-type"].startswith("text/html")
    assert refused == 0
    assert seller.status_code == 200
    assert queued == 1


def test_recovery_kind_names_a_ten_minute_window() -> None:
    at = datetime(2026, 11, 23, 17, 38, 59, tzinfo=UTC)
    assert recover_kind(at) == "recover-202611231730"
    assert len(recover_kind(at)) <= 32  # OutboxEmail.kind column
