"""A message the relay accepted is sent once, whatever the relay does on QUIT.

The whole-send timeout used to cover QUIT too, so a relay that answered 250 to DATA and then
stalled on QUIT got the message again on every retry (4 copies, then a `dead` row). Now the
row is sent at the 250; a stall before it is still a failed attempt that is retried.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default
from typing import Any

import pytest

from config.catalog import Catalog
from config.settings import MailSettings, Settings, SmtpSettings
from gateway.db.models import EmailStatus, OutboxEmail
from gateway.mail.outbox import Mailer
from tests.support.app import running
from tests.support.issuer import fake_gateway, settled_orders
from tests.support.smtp import serving_relay

SEND_TIMEOUT = 0.5
STALL_SECONDS = 3.0  # far longer than the timeout, short enough to end with the test
PASSES = 4


class StallingRelay:
    """aiosmtpd handler that keeps what it accepts and stalls where it is told to."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.stall_on_quit = False
        self.stall_before_accepting = False

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.stall_before_accepting:
            await asyncio.sleep(STALL_SECONDS)
            return "451 Try again later"
        parsed = message_from_bytes(envelope.content, policy=default)
        assert isinstance(parsed, EmailMessage)
        self.messages.append(parsed)
        return "250 Message accepted for delivery"

    async def handle_QUIT(self, server: Any, session: Any, envelope: Any) -> str:
        if self.stall_on_quit:
            await asyncio.sleep(STALL_SECONDS)
        return "221 Bye"


@pytest.fixture
def relay() -> Iterator[tuple[StallingRelay, int]]:
    handler = StallingRelay()
    with serving_relay(handler) as port:
        yield handler, port


def quick_settings(settings_factory: Callable[..., Settings], db_url: str, port: int) -> Settings:
    return settings_factory(
        database_url=db_url,
        mail_backend="smtp",
        smtp=SmtpSettings(
            host="127.0.0.1",
            port=port,
            security="none",
            sender="shop@example.com",
            timeout_seconds=SEND_TIMEOUT,
        ),
        mail=MailSettings(retry_base_seconds=1, retry_max_seconds=1, max_attempts=PASSES),
    )


async def test_relay_stalling_on_quit_after_accepting_data_gets_one_copy_and_the_row_is_sent(
    db_url: str,
    settings_factory: Callable[..., Settings],
    catalog: Catalog,
    relay: tuple[StallingRelay, int],
    caplog: pytest.LogCaptureFixture,
) -> None:
    handler, port = relay
    settings = quick_settings(settings_factory, db_url, port)
    app, _ = fake_gateway(db_url, lambda **kw: settings, catalog)
    async with running(app):
        [order] = await settled_orders(catalog)
        # given a relay that answers 250 to DATA, then does not answer QUIT in time
        handler.stall_on_quit = True
        t0 = datetime.now(UTC)

        # when the sender runs several passes, each one past any retry delay
        with caplog.at_level(logging.WARNING, logger="gateway.mail.outbox"):
            runs = [
                await Mailer(settings).run_once(now=t0 + timedelta(minutes=i))
                for i in range(PASSES)
            ]

        # then the relay got the message once and the row is sent after its first attempt
        assert [(r.sent, r.failed, r.dead) for r in runs] == [(1, 0, 0)] + [(0, 0, 0)] * 3
        assert [m["To"] for m in handler.messages] == ["buyer@example.com"]
        row = await OutboxEmail.get(order_id=order.id)
        assert (row.status, row.attempts) == (EmailStatus.SENT, 1)
        assert not row.last_error
        warnings = [r for r in caplog.records if "ending the session failed" in r.getMessage()]
        assert len(warnings) == 1
        assert "TimeoutError" in warnings[0].getMessage()


async def test_relay_stalling_before_accepting_data_is_retried_and_then_sent_once(
    db_url: str,
    settings_factory: Callable[..., Settings],
    catalog: Catalog,
    relay: tuple[StallingRelay, int],
) -> None:
    handler, port = relay
    settings = quick_settings(settings_factory, db_url, port)
    app, _ = fake_gateway(db_url, lambda **kw: settings, catalog)
    async with running(app):
        [order] = await settled_orders(catalog)
        # given a relay that does not answer the end of DATA in time
        handler.stall_before_accepting = True
        t0 = datetime.now(UTC)

        # when the sender tries once, then again after the relay recovered
        stalled = await Mailer(settings).run_once(now=t0)
        row = await OutboxEmail.get(order_id=order.id)
        handler.stall_before_accepting = False
        recovered = await Mailer(settings).run_once(now=t0 + timedelta(minutes=1))
        again = await Mailer(settings).run_once(now=t0 + timedelta(minutes=2))

        # then the stalled attempt counted as failed and was retried: one copy, sent
        assert (stalled.sent, stalled.failed) == (0, 1)
        assert (row.status, row.attempts) == (EmailStatus.PENDING, 1)
        assert row.last_error is not None
        assert row.last_error.startswith("TimeoutError")
        assert (recovered.sent, again.sent) == (1, 0)
        assert [m["To"] for m in handler.messages] == ["buyer@example.com"]
        row = await OutboxEmail.get(order_id=order.id)
        assert (row.status, row.attempts) == (EmailStatus.SENT, 2)
