"""The outbox sender against a real SMTP server on 127.0.0.1 (aiosmtpd), and its backends."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from config.catalog import Catalog
from config.settings import MailSettings, Settings, SmtpSettings
from gateway.app import create_app
from gateway.cli import main
from gateway.db import database as db
from gateway.db.models import EmailStatus, License, LicenseStatus, OutboxEmail
from gateway.mail.outbox import Mailer, backoff
from tests.support.app import running
from tests.support.issuer import deliver, event, fake_gateway, new_order, settled_orders
from tests.support.procs import free_port

SettingsFactory = Callable[..., Settings]


class SmtpInbox:
    """aiosmtpd handler that keeps every message it accepted."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = message_from_bytes(envelope.content, policy=default)
        assert isinstance(parsed, EmailMessage)
        self.messages.append(parsed)
        return "250 Message accepted for delivery"


class SmtpServer:
    def __init__(self, port: int) -> None:
        self.inbox = SmtpInbox()
        self.controller = Controller(self.inbox, hostname="127.0.0.1", port=port)

    def __enter__(self) -> SmtpInbox:
        self.controller.start()
        return self.inbox

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()


@pytest.fixture
def smtp_port() -> int:
    return free_port()


@pytest.fixture
def smtp_server(smtp_port: int) -> Iterator[SmtpInbox]:
    with SmtpServer(smtp_port) as inbox:
        yield inbox


def smtp_settings(settings_factory: SettingsFactory, db_url: str, port: int, **kw: Any) -> Settings:
    return settings_factory(
        database_url=db_url,
        mail_backend="smtp",
        smtp=SmtpSettings(
            host="127.0.0.1",
            port=port,
            security="none",
            sender="shop@example.com",
            timeout_seconds=5,
        ),
        **kw,
    )


def parts(message: EmailMessage) -> dict[str, str]:
    return {part.get_content_type(): part.get_content() for part in message.iter_parts()}


async def test_license_email_is_delivered_once_with_text_and_html_parts(
    db_url: str,
    settings_factory: SettingsFactory,
    catalog: Catalog,
    smtp_server: SmtpInbox,
    smtp_port: int,
) -> None:
    settings = smtp_settings(settings_factory, db_url, smtp_port)
    app, _ = fake_gateway(db_url, lambda **kw: settings, catalog)
    async with running(app):
        [order] = await settled_orders(catalog)
        key = (await License.get(order_id=order.id)).key
        mailer = Mailer(settings)

        first = await mailer.run_once()
        second = await Mailer(settings).run_once()  # a second sender run

        assert (first.sent, second.sent) == (1, 0)
        [message] = smtp_server.messages
        assert message["To"] == "buyer@example.com"
        assert message["From"] == "shop@example.com"
        assert message.get_content_type() == "multipart/alternative"
        body = parts(message)
        assert set(body) == {"text/plain", "text/html"}
        for content in body.values():
            assert key in content
            assert order.id in content
        row = await OutboxEmail.get(order_id=order.id)
        assert (row.status, row.attempts) == (EmailStatus.SENT, 1)
        assert not row.last_error
        assert row.sent_at is not None


async def test_smtp_down_records_the_attempt_and_delivers_after_backoff_once_it_is_back(
    db_url: str, settings_factory: SettingsFactory, catalog: Catalog, smtp_port: int
) -> None:
    settings = smtp_settings(settings_factory, db_url, smtp_port)
    app, _ = fake_gateway(db_url, lambda **kw: settings, catalog)
    async with running(app):
        [order] = await settled_orders(catalog)
        mailer = Mailer(settings)
        t0 = datetime.now(UTC)

        # given nothing listens on the SMTP port
        down = await mailer.run_once(now=t0)

        assert (down.sent, down.failed) == (0, 1)
        row = await OutboxEmail.get(order_id=order.id)
        assert row.status == EmailStatus.PENDING
        assert row.attempts == 1
        assert row.last_error
        assert row.next_attempt_at == t0 + timedelta(seconds=settings.mail.retry_base_seconds)
        assert (await License.get(order_id=order.id)).status == LicenseStatus.ACTIVE
        # not due yet: nothing is tried
        early = await mailer.run_once(now=t0 + timedelta(seconds=5))
        assert (early.sent, early.failed) == (0, 0)

        # when the server is back and the backoff has passed
        with SmtpServer(smtp_port) as inbox:
            later = await mailer.run_once(now=t0 + timedelta(seconds=31))
            again = await mailer.run_once(now=t0 + timedelta(hours=2))

        # then it is delivered exactly once
        assert (later.sent, again.sent) == (1, 0)
        assert len(inbox.messages) == 1
        row = await OutboxEmail.get(order_id=order.id)
        assert (row.status, row.attempts) == (EmailStatus.SENT, 2)
        assert not row.last_error


async def test_sender_gives_up_after_max_attempts_and_the_license_stays(
    db_url: str, settings_factory: SettingsFactory, catalog: Catalog, smtp_port: int
) -> None:
    settings = smtp_settings(
        settings_factory, db_url, smtp_port, mail=MailSettings(max_attempts=3, retry_base_seconds=1)
    )
    app, _ = fake_gateway(db_url, lambda **kw: settings, catalog)
    async with running(app):
        [order] = await settled_orders(catalog)
        mailer = Mailer(settings)
        t0 = datetime.now(UTC)

        runs = [await mailer.run_once(now=t0 + timedelta(minutes=i)) for i in range(5)]

        assert [(r.failed, r.dead) for r in runs] == [(1, 0), (1, 0), (0, 1), (0, 0), (0, 0)]
        row = await OutboxEmail.get(order_id=order.id)
        assert (row.status, row.attempts) == (EmailStatus.DEAD, 3)
        assert row.last_error
        assert (await License.get(order_id=order.id)).status == LicenseStatus.ACTIVE


def test_backoff_doubles_from_base_and_is_capped() -> None:
    delays = [backoff(n, base=30, cap=3600).total_seconds() for n in range(1, 10)]
    assert delays == [30, 60, 120, 240, 480, 960, 1920, 3600, 3600]


async def test_two_concurrent_senders_deliver_each_email_exactly_once(
    db_url: str,
    settings_factory: SettingsFactory,
    catalog: Catalog,
    smtp_server: SmtpInbox,
    smtp_port: int,
) -> None:
    settings = smtp_settings(settings_factory, db_url, smtp_port, mail=MailSettings(batch_size=3))
    app, _ = fake_gateway(db_url, lambda **kw: settings, catalog)
    async with running(app):
        orders = await settled_orders(catalog, 12)
        senders = [Mailer(settings), Mailer(settings)]

        for _ in range(6):
            await asyncio.gather(*(sender.run_once() for sender in senders))

        ids = Counter(m["Message-ID"] for m in smtp_server.messages)
        assert len(ids) == 12
        assert set(ids.values()) == {1}
        assert sorted(m["To"] for m in smtp_server.messages) == ["buyer@example.com"] * 12
        statuses = await OutboxEmail.filter(order_id__in=[o.id for o in orders]).values_list(
            "status", "attempts"
        )
        assert set(statuses) == {(EmailStatus.SENT, 1)}


async def test_file_backend_writes_one_eml_file_per_email(
    db_url: str, settings_factory: SettingsFactory, catalog: Catalog, tmp_path: Path
) -> None:
    settings = settings_factory(
        database_url=db_url, mail_backend="file", mail_dir=tmp_path / "mail"
    )
    app, _ = fake_gateway(db_url, lambda **kw: settings, catalog)
    async with running(app):
        [order] = await settled_orders(catalog)
        key = (await License.get(order_id=order.id)).key

        await Mailer(settings).run_once()
        await Mailer(settings).run_once()

        [written] = list((tmp_path / "mail").iterdir())
        assert written.suffix == ".eml"
        message = message_from_bytes(written.read_bytes(), policy=default)
        assert isinstance(message, EmailMessage)
        assert key in parts(message)["text/plain"]


async def test_console_backend_logs_recipient_and_subject_but_never_the_key(
    db_url: str,
    settings_factory: SettingsFactory,
    catalog: Catalog,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = settings_factory(database_url=db_url, mail_backend="console")
    app, _ = fake_gateway(db_url, lambda **kw: settings, catalog)
    async with running(app):
        [order] = await settled_orders(catalog)
        key = (await License.get(order_id=order.id)).key

        with caplog.at_level(logging.DEBUG):
            run = await Mailer(settings).run_once()

        assert run.sent == 1
        assert "buyer@example.com" in caplog.text
        assert "license key" in caplog.text
        assert key not in caplog.text
        assert (await OutboxEmail.get(order_id=order.id)).status == EmailStatus.SENT


async def test_app_lifespan_runs_the_sender_loop_and_stops_it_on_shutdown(
    db_url: str, settings_factory: SettingsFactory, catalog: Catalog, tmp_path: Path
) -> None:
    settings = settings_factory(
        database_url=db_url,
        mail_backend="file",
        mail_dir=tmp_path / "mail",
        mail=MailSettings(poll_seconds=0.05),
    )
    fake_app, fake = fake_gateway(db_url, lambda **kw: settings, catalog)
    app = create_app(settings, catalog=catalog, providers={fake.name: fake}, run_migrations=False)
    async with running(app) as client:
        order = await new_order(catalog)
        await deliver(client, fake, event(order))
        for _ in range(100):
            if (await OutboxEmail.get(order_id=order.id)).status == EmailStatus.SENT:
                break
            await asyncio.sleep(0.05)
        assert (await OutboxEmail.get(order_id=order.id)).status == EmailStatus.SENT

    assert len(list((tmp_path / "mail").iterdir())) == 1
    assert not [t for t in asyncio.all_tasks() if t.get_name() == "outbox-mailer"]
    del fake_app


def test_send_mail_cli_once_delivers_the_queued_email(
    db_url: str,
    settings_factory: SettingsFactory,
    catalog: Catalog,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def given_a_settled_order() -> str:
        await db.open_db(settings_factory(database_url=db_url), run_migrations=False)
        try:
            [order] = await settled_orders(catalog)
            return order.id
        finally:
            await db.close_db()

    order_id = asyncio.run(given_a_settled_order())
    monkeypatch.chdir(tmp_path)  # no stray .env
    # The CLI's logging.basicConfig must not leave a handler on a stream pytest closes.
    monkeypatch.setattr(logging.getLogger(), "handlers", [logging.NullHandler()])
    for name, value in {
        "GATEWAY_CONFIG_FILE": "",
        "GATEWAY_DATABASE_URL": db_url,
        "GATEWAY_DATA_DIR": str(tmp_path / "data"),
        "GATEWAY_MAIL_BACKEND": "file",
        "GATEWAY_MAIL_DIR": str(tmp_path / "cli-mail"),
    }.items():
        monkeypatch.setenv(name, value)

    assert main(["send-mail", "--once"]) == 0
    assert main(["send-mail", "--once"]) == 0

    [written] = list((tmp_path / "cli-mail").iterdir())
    assert order_id in written.read_text()


@pytest.mark.slow
def test_send_mail_cli_loop_delivers_then_stops_cleanly_on_sigterm(
    db_url: str, settings_factory: SettingsFactory, catalog: Catalog, tmp_path: Path
) -> None:
    async def given_a_settled_order() -> None:
        await db.open_db(settings_factory(database_url=db_url), run_migrations=False)
        try:
            await settled_orders(catalog)
        finally:
            await db.close_db()

    asyncio.run(given_a_settled_order())
    config = tmp_path / "gateway.toml"
    config.write_text('mail_backend = "file"\n[mail]\npoll_seconds = 0.1\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env |= {
        "GATEWAY_CONFIG_FILE": str(config),
        "GATEWAY_DATABASE_URL": db_url,
        "GATEWAY_DATA_DIR": str(tmp_path / "data"),
        "GATEWAY_MAIL_DIR": str(tmp_path / "loop-mail"),
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "send-mail"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 20
        while not list((tmp_path / "loop-mail").glob("*.eml")):
            assert proc.poll() is None, proc.communicate()[0].decode()
            assert time.monotonic() < deadline, "the sender loop delivered nothing"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)

    assert proc.returncode == 0, output.decode()
    assert len(list((tmp_path / "loop-mail").glob("*.eml"))) == 1
