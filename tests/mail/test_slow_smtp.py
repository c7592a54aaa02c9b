"""Exactly-once mail under a slow SMTP relay with two concurrent senders.

aiosmtplib's `timeout` applies per SMTP command, so a relay answering each command in
0.9 s with a 1 s timeout held one message for 5+ s: longer than the claim's lease, after
which the second sender claimed the same row and sent it again. Sends are now bounded as
a whole, so a claim never outlives its lease, and every license email goes out once.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import timedelta
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default
from typing import Any, AnyStr

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP

from config.catalog import Catalog
from config.settings import MailSettings, Settings, SmtpSettings
from gateway.db.models import EmailStatus, OutboxEmail
from gateway.mail.outbox import Mailer
from tests.support.app import running
from tests.support.issuer import fake_gateway, settled_orders
from tests.support.smtp import serving_relay

ORDERS = 4
SLOW_SECONDS = 8.0  # the relay is slow this long after the first connection, then fast
COMMAND_DELAY = 0.9
SEND_TIMEOUT = 1.0
BATCH = ORDERS  # one sender claims them all; the other waits for a lapsed lease
_ORDER_ID = re.compile(r"ord_[0-9a-f]{20}")


class SlowRelay:
    """Keeps every accepted message; answers each command slowly during its slow phase."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.slow_until: float | None = None

    def delay(self) -> float:
        if self.slow_until is None:
            self.slow_until = time.monotonic() + SLOW_SECONDS
        return COMMAND_DELAY if time.monotonic() < self.slow_until else 0.0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = message_from_bytes(envelope.content, policy=default)
        assert isinstance(parsed, EmailMessage)
        self.messages.append(parsed)
        return "250 Message accepted for delivery"


class SlowSMTP(SMTP):
    async def push(self, status: AnyStr) -> None:
        relay = self.event_handler
        assert isinstance(relay, SlowRelay)
        line = status.decode() if isinstance(status, bytes) else status
        if line[3:4] != "-":  # once per reply, not per line of a multi-line EHLO reply
            await asyncio.sleep(relay.delay())
        await super().push(status)


class SlowController(Controller):
    def factory(self) -> SMTP:
        return SlowSMTP(self.handler, **self.SMTP_kwargs)


@pytest.fixture
def slow_relay() -> Iterator[tuple[SlowRelay, int]]:
    relay = SlowRelay()
    with serving_relay(relay, SlowController) as port:
        yield relay, port


def _order_of(message: EmailMessage) -> str:
    text = message.get_body(preferencelist=("plain",))
    assert text is not None
    found = _ORDER_ID.search(text.get_content())
    assert found is not None
    return found.group(0)


@pytest.mark.slow
async def test_slow_relay_and_two_senders_send_every_email_exactly_once(
    db_url: str,
    settings_factory: Callable[..., Settings],
    catalog: Catalog,
    slow_relay: tuple[SlowRelay, int],
) -> None:
    relay, port = slow_relay
    settings = settings_factory(
        database_url=db_url,
        mail_backend="smtp",
        smtp=SmtpSettings(
            host="127.0.0.1",
            port=port,
            security="none",
            sender="shop@example.com",
            timeout_seconds=SEND_TIMEOUT,
        ),
        mail=MailSettings(
            batch_size=BATCH,
            poll_seconds=0.1,
            retry_base_seconds=0.2,
            retry_max_seconds=0.5,
            max_attempts=100,
        ),
    )
    app, _ = fake_gateway(db_url, lambda **kw: settings, catalog)
    async with running(app):
        orders = await settled_orders(catalog, ORDERS)
        # given two senders whose claims last what a batch of bounded sends needs (the
        # production margin for DB round trips is shrunk so the test runs in seconds)
        senders = [Mailer(settings), Mailer(settings)]
        for sender in senders:
            sender.lease = timedelta(seconds=BATCH * SEND_TIMEOUT + 0.5)
        stop = asyncio.Event()
        loops = [asyncio.create_task(sender.run_forever(stop)) for sender in senders]

        # when they run against the slow relay until every email is sent
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            pending = await OutboxEmail.filter(status=EmailStatus.PENDING).count()
            if pending == 0:
                break
            await asyncio.sleep(0.2)
        # a claim that outlived its lease would re-send now: give it the time to show
        await asyncio.sleep(BATCH * SEND_TIMEOUT + 1)
        stop.set()
        await asyncio.gather(*loops)

        # then each order's email reached the relay exactly once, with its fixed Message-ID
        per_order = Counter(_order_of(m) for m in relay.messages)
        assert per_order == Counter({o.id: 1 for o in orders})
        rows = await OutboxEmail.filter(order_id__in=[o.id for o in orders])
        assert {row.status for row in rows} == {EmailStatus.SENT}
        expected_ids = {f"<outbox-{row.id}.{row.order_id}@example.com>" for row in rows}  # type: ignore[attr-defined]
        assert {m["Message-ID"] for m in relay.messages} == expected_ids
