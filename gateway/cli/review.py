"""`review`: webhook events parked for a human."""

from __future__ import annotations

from typing import Any

import click

from gateway.cli import cli
from gateway.cli.common import emit_table, json_option, settings_and_logging, with_db


@cli.group(invoke_without_command=True)
@click.pass_context
def review(ctx: click.Context) -> None:
    """Events parked for review (amount/currency mismatch, unknown order, ...)."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(review_list, as_json=False)


@review.command("list")
@json_option
def review_list(as_json: bool) -> None:
    """List parked events, oldest first."""
    from gateway.models import InboxEvent, InboxOutcome

    settings = settings_and_logging()

    async def work() -> list[dict[str, Any]]:
        events = await InboxEvent.filter(outcome=InboxOutcome.PARKED).order_by("received_at", "id")
        return [
            {
                "id": e.id,
                "received_at": e.received_at.isoformat(timespec="seconds"),
                "provider": e.provider,
                "order_id": e.order_id,
                "kind": e.kind,
                "event": e.dedupe_key,
                "reason": e.detail.replace("\n", " "),
            }
            for e in events
        ]

    rows = with_db(settings, work)
    emit_table(
        rows,
        ["id", "received_at", "provider", "order_id", "kind", "event", "reason"],
        as_json=as_json,
        title="parked events",
        empty="no parked events",
    )
    if rows and not as_json:
        click.echo(f"{len(rows)} parked event(s)")
