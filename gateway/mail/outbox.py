"""The outbox sender: delivers `OutboxEmail` rows written with the license, with retries.

A row is *claimed* before it is sent: in one transaction the sender selects due rows (on
PostgreSQL with `FOR UPDATE SKIP LOCKED`, so concurrent senders never pick the same row),
then moves each row's `next_attempt_at` forward by a lease and bumps `attempts` with a
compare-and-set on the old `attempts` value. Another sender sees a claimed row only after
the lease ran out, so several senders (in several processes or hosts) never double-send.
SQLite has no row locks; the compare-and-set still keeps two senders apart, but run one
sender per SQLite database.

Each send up to the relay's acceptance is bounded as a whole
(`asyncio.timeout(smtp.timeout_seconds)`), not only per SMTP command as aiosmtplib's own
timeout is: a relay answering every command slowly could otherwise hold one message for many
timeouts, the lease would run out mid-batch, and a second sender would claim and send the
same row again. The goodbye after it (SMTP QUIT) has a bound of its own, so a batch holds
its claim for at most `batch_size * 2 * timeout`, and the lease is that plus a margin.

Right after the transport accepts a message the row is marked sent in its own committed
update, a compare-and-set on the claim (`attempts` as claimed), so a stale sender can never
overwrite a newer claim. Only then is the session ended: a relay that answered 250 to DATA
has the message, so QUIT timing out or failing is a warning, never a retry (retrying it
would deliver one more copy on every attempt). A crash between acceptance and the update can
re-send that one mail once the lease has expired: the unavoidable at-least-once window of any
SMTP outbox; the `Message-ID` is fixed per row, so such a copy is recognisable downstream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime

from tortoise.transactions import in_transaction

from config.settings import Settings
from gateway.db.models import EmailStatus, OutboxEmail
from gateway.mail.transports import Goodbye, Transport, transport_for

log = logging.getLogger(__name__)

# Database round trips of one batch (claim, mark sent/failed), on top of its sends.
LEASE_MARGIN = timedelta(seconds=60)


def build_message(row: OutboxEmail, sender: str) -> EmailMessage:
    """Multipart/alternative: plain text first, HTML as the preferred alternative."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = row.to_address
    message["Subject"] = row.subject
    message["Date"] = format_datetime(datetime.now(UTC))
    message["Message-ID"] = message_id(row, sender)
    message.set_content(row.body_text)
    message.add_alternative(row.body_html, subtype="html")
    return message


def message_id(row: OutboxEmail, sender: str) -> str:
    """Fixed per outbox row: a re-send after a crash carries the same id as the first copy."""
    domain = sender.rpartition("@")[2].strip("<> ") or "localhost"
    return f"<outbox-{row.id}.{row.order_id}@{domain}>"  # type: ignore[attr-defined]


def backoff(attempts: int, *, base: float, cap: float) -> timedelta:
    """Delay after the `attempts`-th failed try: base, 2*base, 4*base, ... capped."""
    return timedelta(seconds=min(cap, base * 2 ** max(0, attempts - 1)))


@dataclass(frozen=True, slots=True, kw_only=True)
class MailRun:
    sent: int = 0
    failed: int = 0
    dead: int = 0


class Mailer:
    def __init__(self, settings: Settings, transport: Transport | None = None) -> None:
        self.settings = settings
        self.transport = transport or transport_for(settings)
        mail = settings.mail
        # Bounds one whole send up to its acceptance (connect, every command, the data),
        # not one SMTP command; the goodbye after it gets the same bound again.
        self.send_timeout = settings.smtp.timeout_seconds
        # Long enough for a whole batch to time out one message after another, twice.
        per_message = 2 * self.send_timeout
        self.lease = timedelta(seconds=mail.batch_size * per_message) + LEASE_MARGIN

    async def run_once(self, now: datetime | None = None) -> MailRun:
        """Send every due email once. `now` is injectable so tests control time."""
        now = now or datetime.now(UTC)
        sent = failed = dead = 0
        claimed = await self._claim(now)
        started = time.monotonic()
        for index, row in enumerate(claimed):
            # Belt and braces: never start a send that could outlive the claim. The rows
            # left are sent after their lease runs out, by this or another sender.
            elapsed = time.monotonic() - started
            if elapsed + self.send_timeout > self.lease.total_seconds():
                left = len(claimed) - index
                log.warning("outbox: batch ran out of lease; %d email(s) left for later", left)
                break
            outcome = await self._deliver(row, now)
            sent += outcome == EmailStatus.SENT
            failed += outcome == EmailStatus.PENDING
            dead += outcome == EmailStatus.DEAD
        return MailRun(sent=sent, failed=failed, dead=dead)

    async def run_forever(self, stop: asyncio.Event) -> None:
        """The loop the app lifespan and `checkout-gateway send-mail` run until `stop`."""
        poll = self.settings.mail.poll_seconds
        while not stop.is_set():
            try:
                run = await self.run_once()
                if run.sent or run.failed or run.dead:
                    log.info("outbox: %d sent, %d failed, %d dead", run.sent, run.failed, run.dead)
            except Exception:
                # The DB may be briefly away; the next round retries. Never kill the loop.
                log.exception("outbox round failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=poll)

    async def _claim(self, now: datetime) -> list[OutboxEmail]:
        claimed: list[OutboxEmail] = []
        async with in_transaction() as conn:
            due = (
                await OutboxEmail.filter(status=EmailStatus.PENDING, next_attempt_at__lte=now)
                .order_by("next_attempt_at", "id")
                .limit(self.settings.mail.batch_size)
                .select_for_update(skip_locked=True)  # ignored on SQLite
                .using_db(conn)
            )
            for row in due:
                taken = (
                    await OutboxEmail.filter(
                        id=row.id, status=EmailStatus.PENDING, attempts=row.attempts
                    )
                    .using_db(conn)
                    .update(attempts=row.attempts + 1, next_attempt_at=now + self.lease)
                )
                if taken:
                    row.attempts += 1
                    claimed.append(row)
        return claimed

    async def _deliver(self, row: OutboxEmail, now: datetime) -> EmailStatus:
        message = build_message(row, self.settings.smtp.sender)
        try:
            async with asyncio.timeout(self.send_timeout):
                goodbye = await self.transport.send(message)
        except Exception as exc:  # any failure before acceptance (a timeout too) is retried
            return await self._failed(row, now, exc)
        try:
            await self._mark_sent(row)
        finally:
            await self._end_session(row, goodbye)
        return EmailStatus.SENT

    async def _mark_sent(self, row: OutboxEmail) -> None:
        # Compare-and-set on our claim: only the sender holding the row's current claim
        # marks it, so a stale sender never overwrites a newer claim's outcome.
        marked = await OutboxEmail.filter(
            id=row.id, status=EmailStatus.PENDING, attempts=row.attempts
        ).update(status=EmailStatus.SENT, sent_at=datetime.now(UTC), last_error=None)
        if not marked:
            log.warning(
                "email %s for order %s was sent after its claim had been taken over",
                row.id,
                row.order_id,  # type: ignore[attr-defined]
            )
        log.info("email %s (%s) sent for order %s", row.id, row.kind, row.order_id)  # type: ignore[attr-defined]

    async def _end_session(self, row: OutboxEmail, goodbye: Goodbye) -> None:
        try:
            async with asyncio.timeout(self.send_timeout):
                await goodbye()
        except Exception as exc:  # the relay has the message: this is no failed send
            log.warning(
                "email %s for order %s was accepted; ending the session failed: %s: %s",
                row.id,
                row.order_id,  # type: ignore[attr-defined]
                type(exc).__name__,
                exc,
            )

    async def _failed(self, row: OutboxEmail, now: datetime, exc: Exception) -> EmailStatus:
        mail = self.settings.mail
        error = f"{type(exc).__name__}: {exc}"[:1000]
        if row.attempts >= mail.max_attempts:
            status = EmailStatus.DEAD
            next_at = now
            log.error(
                "email %s for order %s gave up after %d attempts: %s",
                row.id,
                row.order_id,  # type: ignore[attr-defined]
                row.attempts,
                error,
            )
        else:
            status = EmailStatus.PENDING
            next_at = now + backoff(
                row.attempts, base=mail.retry_base_seconds, cap=mail.retry_max_seconds
            )
            log.warning(
                "email %s for order %s failed (attempt %d), retry at %s: %s",
                row.id,
                row.order_id,  # type: ignore[attr-defined]
                row.attempts,
                next_at.isoformat(),
                error,
            )
        await OutboxEmail.filter(id=row.id, attempts=row.attempts).update(
            status=status, next_attempt_at=next_at, last_error=error
        )
        return status
