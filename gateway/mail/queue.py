"""The outbox queue: putting an email on it, and what the operator does with it (list the
queued emails, queue dead ones again).

Queueing again gives an email a fresh attempt budget; an email already waiting for its
first attempt is left alone, so every retry is idempotent.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.queryset import QuerySet

from gateway.db.models import EmailStatus, OutboxEmail
from gateway.mail.messages import EmailContent

log = logging.getLogger(__name__)


async def enqueue(
    *,
    order_id: str,
    kind: str,
    to_address: str,
    content: EmailContent,
    now: datetime,
    using_db: BaseDBAsyncClient | None = None,
) -> OutboxEmail:
    """Queue one email for the sender; (order, kind) is unique, so a second one of the same
    kind raises IntegrityError, and in the caller's transaction (`using_db`) it commits or
    rolls back with whatever it announces."""
    return await OutboxEmail.create(
        using_db=using_db,
        order_id=order_id,
        kind=kind,
        to_address=to_address,
        subject=content.subject,
        body_text=content.text,
        body_html=content.html,
        status=EmailStatus.PENDING,
        next_attempt_at=now,
    )


def is_queued(email: OutboxEmail) -> bool:
    """Waiting for its first attempt: queueing it again would change nothing."""
    return email.status is EmailStatus.PENDING and email.attempts == 0


async def queue_again(emails: QuerySet[OutboxEmail]) -> int:
    """Put `emails` back at the head of the queue with a fresh attempt budget."""
    return await emails.update(
        status=EmailStatus.PENDING,
        attempts=0,
        next_attempt_at=datetime.now(UTC),
        last_error=None,
    )


async def list_emails(status: str | None, *, limit: int) -> list[OutboxEmail]:
    """Emails, newest first, optionally of one status."""
    query = OutboxEmail.all()
    if status:
        query = query.filter(status=status)
    return await query.order_by("-created_at", "-id").limit(limit)


@dataclass(frozen=True, slots=True)
class Retried:
    """What `retry` did: each email it found, with True when it was queued again now (False:
    it already was), and the asked-for ids that are neither dead nor failing (or gone)."""

    emails: list[tuple[OutboxEmail, bool]]
    missing: list[int]


async def retry(email_ids: Sequence[int]) -> Retried:
    """Queue again the dead or failing emails `email_ids`, or every dead one if none given."""
    query = OutboxEmail.filter(status__in=[EmailStatus.DEAD, EmailStatus.PENDING])
    if email_ids:
        query = query.filter(id__in=list(email_ids))
    else:
        query = query.filter(status=EmailStatus.DEAD)
    targets = await query
    done: list[tuple[OutboxEmail, bool]] = []
    for email in targets:
        if is_queued(email):
            done.append((email, False))
            continue
        # Only if the sender has not touched it since it was read.
        await queue_again(
            OutboxEmail.filter(id=email.id, status=email.status, attempts=email.attempts)
        )
        log.info(
            "email %s (%s, was %s) queued again",
            email.id,
            email.kind,
            email.status.value,
            extra={"order_id": email.order_id},  # type: ignore[attr-defined]
        )
        done.append((email, True))
    missing = sorted(set(email_ids) - {email.id for email in targets})
    return Retried(emails=done, missing=missing)
