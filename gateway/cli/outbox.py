"""`outbox list|retry`: the queued license emails, and bringing dead ones back."""

from __future__ import annotations

from typing import Any

import click

from gateway.cli.common import emit_table, iso, json_option, settings_and_logging, with_db
from gateway.db.models import OutboxEmail
from gateway.mail import queue

COLUMNS = ["id", "order_id", "kind", "to", "status", "attempts", "next_attempt_at", "last_error"]


@click.group()
def outbox() -> None:
    """Queued emails (license keys): list them, retry dead ones."""


@outbox.command("list")
@click.option("--dead", is_flag=True, help="only emails that gave up (status dead)")
@click.option("--status", type=click.Choice(["pending", "sent", "dead"]), help="only this status")
@click.option("--limit", type=click.IntRange(1, 10000), default=200, show_default=True)
@json_option
def outbox_list(dead: bool, status: str | None, limit: int, as_json: bool) -> None:
    """List emails, newest first."""
    settings = settings_and_logging()
    wanted = "dead" if dead else status

    async def work() -> list[dict[str, Any]]:
        return [_row(m) for m in await queue.list_emails(wanted, limit=limit)]

    rows = with_db(settings, work)
    emit_table(rows, COLUMNS, as_json=as_json, title="outbox", empty="no emails match")


def _row(email: OutboxEmail) -> dict[str, Any]:
    return {
        "id": email.id,
        "order_id": email.order_id,  # type: ignore[attr-defined]
        "kind": email.kind,
        "to": email.to_address,
        "subject": email.subject,
        "status": email.status.value,
        "attempts": email.attempts,
        "next_attempt_at": iso(email.next_attempt_at),
        "sent_at": iso(email.sent_at),
        "last_error": email.last_error,
    }


@outbox.command("retry")
@click.argument("email_ids", nargs=-1, type=int)
@click.option("--all-dead", is_flag=True, help="every dead email")
def outbox_retry(email_ids: tuple[int, ...], all_dead: bool) -> None:
    """Send dead (or failing) emails again now, with a fresh attempt budget. Idempotent."""
    if not email_ids and not all_dead:
        raise click.UsageError("name email ids (see `outbox list --dead`) or pass --all-dead")
    settings = settings_and_logging()
    done = with_db(settings, lambda: queue.retry(email_ids))
    lines = [
        f"email {m.id} to {m.to_address} queued again (was {m.status.value})"
        if queued
        else f"email {m.id} is already queued"
        for m, queued in done.emails
    ]
    lines += [f"email {i}: not found or already sent" for i in done.missing]
    click.echo("\n".join(lines) if lines else "no dead emails")
