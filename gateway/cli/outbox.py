"""`outbox list|retry`: the queued license emails, and bringing dead ones back."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import click

from gateway.cli import cli
from gateway.cli.common import emit_table, iso, json_option, log, settings_and_logging, with_db

COLUMNS = ["id", "order_id", "kind", "to", "status", "attempts", "next_attempt_at", "last_error"]


@cli.group()
def outbox() -> None:
    """Queued emails (license keys): list them, retry dead ones."""


@outbox.command("list")
@click.option("--dead", is_flag=True, help="only emails that gave up (status dead)")
@click.option("--status", type=click.Choice(["pending", "sent", "dead"]), help="only this status")
@click.option("--limit", type=click.IntRange(1, 10000), default=200, show_default=True)
@json_option
def outbox_list(dead: bool, status: str | None, limit: int, as_json: bool) -> None:
    """List emails, newest first."""
    from gateway.db.models import OutboxEmail

    settings = settings_and_logging()
    wanted = "dead" if dead else status

    async def work() -> list[dict[str, Any]]:
        query = OutboxEmail.all()
        if wanted:
            query = query.filter(status=wanted)
        rows = await query.order_by("-created_at", "-id").limit(limit)
        return [
            {
                "id": m.id,
                "order_id": m.order_id,  # type: ignore[attr-defined]
                "kind": m.kind,
                "to": m.to_address,
                "subject": m.subject,
                "status": m.status.value,
                "attempts": m.attempts,
                "next_attempt_at": iso(m.next_attempt_at),
                "sent_at": iso(m.sent_at),
                "last_error": m.last_error,
            }
            for m in rows
        ]

    rows = with_db(settings, work)
    emit_table(rows, COLUMNS, as_json=as_json, title="outbox", empty="no emails match")


@outbox.command("retry")
@click.argument("email_ids", nargs=-1, type=int)
@click.option("--all-dead", is_flag=True, help="every dead email")
def outbox_retry(email_ids: tuple[int, ...], all_dead: bool) -> None:
    """Send dead (or failing) emails again now, with a fresh attempt budget. Idempotent."""
    from gateway.db.models import EmailStatus, OutboxEmail

    if not email_ids and not all_dead:
        raise click.UsageError("name email ids (see `outbox list --dead`) or pass --all-dead")
    settings = settings_and_logging()

    async def work() -> list[str]:
        query = OutboxEmail.filter(status__in=[EmailStatus.DEAD, EmailStatus.PENDING])
        if email_ids:
            query = query.filter(id__in=list(email_ids))
        else:
            query = query.filter(status=EmailStatus.DEAD)
        targets = await query
        lines = []
        for m in targets:
            if m.status is EmailStatus.PENDING and m.attempts == 0:
                lines.append(f"email {m.id} is already queued")
                continue
            await OutboxEmail.filter(id=m.id, status=m.status, attempts=m.attempts).update(
                status=EmailStatus.PENDING,
                attempts=0,
                next_attempt_at=datetime.now(UTC),
                last_error=None,
            )
            log.info(
                "email %s (%s, was %s) queued again",
                m.id,
                m.kind,
                m.status.value,
                extra={"order_id": m.order_id},  # type: ignore[attr-defined]
            )
            lines.append(f"email {m.id} to {m.to_address} queued again (was {m.status.value})")
        missing = sorted(set(email_ids) - {m.id for m in targets})
        lines += [f"email {i}: not found or already sent" for i in missing]
        return lines

    lines = with_db(settings, work)
    click.echo("\n".join(lines) if lines else "no dead emails")
