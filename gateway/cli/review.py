"""`review`: orders and webhook events that need a human, and the decision on them."""

from __future__ import annotations

from typing import Any

import click

from gateway.cli import cli
from gateway.cli.common import (
    emit_object,
    emit_table,
    json_option,
    settings_and_logging,
    with_db,
)


@cli.group(invoke_without_command=True)
@click.pass_context
def review(ctx: click.Context) -> None:
    """Orders in needs_review and parked events (amount/currency mismatch, unknown order,
    a late payment under the review policy, ...)."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(review_list, as_json=False)


@review.command("list")
@json_option
def review_list(as_json: bool) -> None:
    """List what needs review, oldest first: orders (type "order") and parked events."""
    from gateway.db.models import InboxEvent, InboxOutcome, Order, OrderStatus

    settings = settings_and_logging()

    async def work() -> list[dict[str, Any]]:
        orders = await Order.filter(status=OrderStatus.NEEDS_REVIEW).order_by("updated_at")
        events = await InboxEvent.filter(outcome=InboxOutcome.PARKED).order_by("received_at", "id")
        rows: list[dict[str, Any]] = [
            {
                "type": "order",
                "id": o.id,
                "received_at": o.updated_at.isoformat(timespec="seconds"),
                "provider": o.provider,
                "order_id": o.id,
                "kind": o.status.value,
                "event": o.provider_ref,
                "reason": (o.review_reason or "").replace("\n", " "),
            }
            for o in orders
        ]
        rows += [
            {
                "type": "event",
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
        return rows

    rows = with_db(settings, work)
    emit_table(
        rows,
        ["type", "id", "received_at", "provider", "order_id", "kind", "event", "reason"],
        as_json=as_json,
        title="needs review",
        empty="nothing needs review",
    )
    if rows and not as_json:
        orders = sum(r["type"] == "order" for r in rows)
        click.echo(f"{orders} order(s) in needs_review, {len(rows) - orders} parked event(s)")
        click.echo("decide with: checkout-gateway review resolve ORDER_ID --issue | --dismiss")


@review.command("resolve")
@click.argument("order_id")
@click.option("--issue", "decision", flag_value="issue", help="issue the license (once)")
@click.option("--dismiss", "decision", flag_value="dismiss", help="fail the order")
@click.option("--reason", default="", help="why (kept in the order's notes)")
@json_option
def review_resolve(order_id: str, decision: str | None, reason: str, as_json: bool) -> None:
    """Decide a needs_review order after checking the payment at the provider."""
    from config.catalog import load_catalog
    from gateway.payments.apply import Applier, Result

    if decision is None:
        raise click.UsageError("say --issue or --dismiss")
    settings = settings_and_logging()
    applier = Applier(
        load_catalog(settings.products_file),
        public_url=settings.public_url,
        help_url=settings.license.activation_help_url,
    )

    async def work() -> dict[str, Any]:
        result = await applier.resolve_review(
            order_id, issue=decision == "issue", note=reason.strip()
        )
        return {
            "order_id": result.order_id or order_id,
            "result": result.result.value,
            "detail": result.detail,
            "license_issued": result.license_issued,
        }

    doc = with_db(settings, work)
    emit_object(doc, as_json=as_json)
    if doc["result"] != Result.APPLIED.value:
        raise click.exceptions.Exit(1)
