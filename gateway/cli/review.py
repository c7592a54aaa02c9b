"""`review`: orders and webhook events that need a human, and the decision on them."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import click

from config.catalog import load_catalog
from gateway.cli.common import (
    emit_object,
    emit_table,
    json_option,
    settings_and_logging,
    with_db,
)
from gateway.payments.apply import Applier, Result
from gateway.payments.review import needs_review


@click.group(invoke_without_command=True)
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
    settings = settings_and_logging()

    async def work() -> list[dict[str, Any]]:
        return [asdict(item) for item in await needs_review()]

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
