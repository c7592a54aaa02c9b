"""`/metrics`: counters move with real webhook deliveries, the bearer token guards it (and
without one it is closed unless made public), the outbox is counted from the database, and a
secret that rejects everything raises an alarm.
Plus the JSON log format."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable

import pytest
from prometheus_client import REGISTRY
from pydantic import SecretStr
from starlette.applications import Starlette

from config.catalog import Catalog
from config.settings import Settings
from gateway.db.models import EmailStatus, OutboxEmail
from gateway.ops.context import request_id_var
from gateway.ops.logs import JsonFormatter, redact_keys, setup_logging
from gateway.webhooks.alarm import SignatureAlarm
from sandbox.provider import FakeProvider
from tests.support.app import running
from tests.support.issuer import deliver, event, fake_gateway, new_order, results

TOKEN = "scrape-me"
SCRAPER = {"authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def app(
    db_url: str, settings_factory: Callable[..., Settings], catalog: Catalog, fake: FakeProvider
) -> Starlette:
    """The shared `app` fixture's gateway, scraped the configured way (a bearer token)."""
    app, _ = fake_gateway(
        db_url, settings_factory, catalog, fake=fake, metrics_token=SecretStr(TOKEN)
    )
    return app


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def scraped(text: str, line_start: str) -> float:
    """The value of the first exposition line starting with `line_start`."""
    for line in text.splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{line_start!r} not in /metrics")


@pytest.mark.db
async def test_webhook_moves_the_counters(
    app: Starlette, fake: FakeProvider, catalog: Catalog
) -> None:
    before = {
        "received": sample("gateway_webhooks_received_total", provider="stripe"),
        "applied": sample("gateway_events_total", provider="stripe", outcome="applied"),
        "duplicate": sample("gateway_webhook_duplicates_total", provider="stripe"),
        "issued": sample("gateway_licenses_issued_total", source="webhook"),
        "rejected": sample(
            "gateway_webhooks_rejected_total", provider="stripe", reason="bad_signature"
        ),
        "latency": sample("gateway_settle_to_license_seconds_count"),
        "calls": sample(
            "gateway_provider_calls_total",
            provider="stripe",
            operation="parse_webhook",
            outcome="ok",
        ),
    }
    async with running(app) as client:
        order = await new_order(catalog)
        settle = event(order)
        # when a settle is delivered twice and a forged delivery arrives
        assert results(await deliver(client, fake, settle)) == ["applied"]
        assert results(await deliver(client, fake, settle)) == ["duplicate"]
        forged = await client.post(
            "/webhooks/stripe", content=b'{"events": []}', headers={"x-fake-signature": "00"}
        )
        page = await client.get("/metrics", headers=SCRAPER)

    # then every counter moved by exactly what happened
    assert forged.status_code == 400
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/plain")
    assert sample("gateway_webhooks_received_total", provider="stripe") == before["received"] + 3
    assert (
        sample("gateway_events_total", provider="stripe", outcome="applied")
        == before["applied"] + 1
    )
    assert sample("gateway_webhook_duplicates_total", provider="stripe") == before["duplicate"] + 1
    assert sample("gateway_licenses_issued_total", source="webhook") == before["issued"] + 1
    assert (
        sample("gateway_webhooks_rejected_total", provider="stripe", reason="bad_signature")
        == before["rejected"] + 1
    )
    assert sample("gateway_settle_to_license_seconds_count") == before["latency"] + 1
    assert (
        sample(
            "gateway_provider_calls_total",
            provider="stripe",
            operation="parse_webhook",
            outcome="ok",
        )
        == before["calls"] + 2
    )
    # and the scrape itself shows them, plus the outbox counted in the database
    assert scraped(page.text, 'gateway_outbox_emails{state="pending"}') == 1
    assert scraped(page.text, 'gateway_outbox_emails{state="dead"}') == 0
    assert scraped(page.text, 'gateway_licenses_issued_total{source="webhook"}') >= 1
    assert order.id not in page.text  # never an order id (or a key) as a label


@pytest.mark.db
async def test_outbox_gauge_counts_dead_emails(
    app: Starlette, fake: FakeProvider, catalog: Catalog
) -> None:
    async with running(app) as client:
        order = await new_order(catalog)
        await deliver(client, fake, event(order))
        await OutboxEmail.filter(order_id=order.id).update(status=EmailStatus.DEAD)
        page = await client.get("/metrics", headers=SCRAPER)

    assert scraped(page.text, 'gateway_outbox_emails{state="dead"}') == 1
    assert scraped(page.text, 'gateway_outbox_emails{state="pending"}') == 0


@pytest.mark.db
async def test_metrics_token_guards_the_endpoint(
    db_url: str, settings_factory: Callable[..., Settings], catalog: Catalog
) -> None:
    app, _ = fake_gateway(db_url, settings_factory, catalog, metrics_token=SecretStr(TOKEN))
    async with running(app) as client:
        anonymous = await client.get("/metrics")
        wrong = await client.get("/metrics", headers={"authorization": "Bearer nope"})
        right = await client.get("/metrics", headers=SCRAPER)

    assert anonymous.status_code == wrong.status_code == 401
    assert anonymous.json()["error"] == "unauthorized"
    assert anonymous.headers["www-authenticate"] == "Bearer"
    assert right.status_code == 200
    assert "gateway_webhooks_received_total" in right.text


@pytest.mark.db
async def test_metrics_answer_404_without_a_token_unless_made_public(
    db_url: str, settings_factory: Callable[..., Settings], catalog: Catalog
) -> None:
    closed, _ = fake_gateway(db_url, settings_factory, catalog)
    async with running(closed) as client:
        anonymous = await client.get("/metrics")
        bearer = await client.get("/metrics", headers={"authorization": "Bearer anything"})
        unknown = await client.get("/no-such-path")
    public, _ = fake_gateway(db_url, settings_factory, catalog, metrics_public=True)
    async with running(public) as client:
        opened = await client.get("/metrics")
    both, _ = fake_gateway(
        db_url, settings_factory, catalog, metrics_public=True, metrics_token=SecretStr(TOKEN)
    )
    async with running(both) as client:
        without_token = await client.get("/metrics")

    # a closed /metrics looks like any unknown path, whatever the caller sends
    assert anonymous.status_code == bearer.status_code == 404
    assert anonymous.json() == bearer.json() == unknown.json()
    assert "gateway_" not in anonymous.text
    # opened on purpose it answers anyone; a token, when set, is still required
    assert opened.status_code == 200
    assert "gateway_webhooks_received_total" in opened.text
    assert without_token.status_code == 401


def test_alarm_raises_only_after_every_delivery_failed_for_the_window(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [1000.0]
    alarm = SignatureAlarm(10, clock=lambda: now[0])

    alarm.refused("btcpay")
    now[0] += 9 * 60
    alarm.refused("btcpay")
    early = alarm.is_raised("btcpay")
    now[0] += 61
    with caplog.at_level(logging.ERROR):
        alarm.refused("btcpay")
        alarm.refused("btcpay")  # logged once, not per delivery

    assert early is False
    assert alarm.is_raised("btcpay")
    assert sample("gateway_webhook_signature_failing", provider="btcpay") == 1
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "GATEWAY_BTCPAY__WEBHOOK_SECRET" in errors[0].getMessage()
    # a verified delivery clears it, and restarts the window
    alarm.verified("btcpay")
    assert not alarm.is_raised("btcpay")
    assert sample("gateway_webhook_signature_failing", provider="btcpay") == 0
    alarm.refused("btcpay")
    assert not alarm.is_raised("btcpay")


def test_one_good_delivery_inside_the_window_keeps_the_alarm_down() -> None:
    now = [0.0]
    alarm = SignatureAlarm(1, clock=lambda: now[0])

    alarm.refused("stripe")
    now[0] = 50
    alarm.verified("stripe")
    now[0] = 70
    alarm.refused("stripe")

    assert not alarm.is_raised("stripe")


def test_json_log_lines_carry_context_and_never_a_clear_key() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("test.jsonlogs")
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    token = request_id_var.set("req-123")
    try:
        logger.info(
            "settled %s with key %s",
            "ord_1",
            "7KQM-3HXD-9PWT-R2ZC",
            extra={
                "order_id": "ord_1",
                "provider": "stripe",
                "event": "PaymentSettled",
                "dedupe_key": "evt_1",
            },
        )
    finally:
        request_id_var.reset(token)
        logger.removeHandler(handler)

    doc = json.loads(stream.getvalue())
    assert doc["level"] == "INFO"
    assert doc["logger"] == "test.jsonlogs"
    assert doc["order_id"] == "ord_1"
    assert doc["provider"] == "stripe"
    assert doc["event"] == "PaymentSettled"
    assert doc["dedupe_key"] == "evt_1"
    assert doc["request_id"] == "req-123"
    assert doc["timestamp"].endswith("+00:00")
    assert "7KQM-3HXD-9PWT-R2ZC" not in stream.getvalue()
    assert "7KQM-****-****-R2ZC" in doc["message"]


def test_redact_keys_leaves_other_text_alone() -> None:
    assert (
        redact_keys("order ord_0123456789abcdef0123 paid") == "order ord_0123456789abcdef0123 paid"
    )
    assert redact_keys("k=ABCD-EFGH-JKMN-PQRS.") == "k=ABCD-****-****-PQRS."


def test_setup_logging_json_writes_one_object_per_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        setup_logging("INFO", "json")
        logging.getLogger("gateway.test").info("one\ntwo")
        logging.getLogger("gateway.test").warning("three")
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)

    lines = capsys.readouterr().err.splitlines()
    assert [json.loads(line)["message"] for line in lines] == ["one\ntwo", "three"]
