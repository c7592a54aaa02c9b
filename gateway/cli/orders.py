"""`orders list|show`: what was bought, how it stands, and what the providers told us."""

from __future__ import annotations

from typing import Any

import click

from gateway.cli import cli
from gateway.cli.common import (
    emit_object,
    emit_table,
    iso,
    json_option,
    parse_since,
    settings_and_logging,
    with_db,
)

ORDER_STATUSES = ["created", "pending", "settled", "failed", "reversed", "needs_review"]
LIST_COLUMNS = ["id", "created_at", "status", "provider", "product", "amount", "email"]


@cli.group()
def orders() -> None:
    """Orders: list with filters, show one with its events, license and emails."""


@orders.command("list")
@click.option("--status", type=click.Choice(ORDER_STATUSES), help="only this status")
@click.option("--provider", help="only this provider (stripe, btcpay, comp)")
@click.option("--email", help="only this buyer email (case-insensitive)")
@click.option("--since", help="created since: a date (2026-11-01) or an age (30m, 24h, 7d)")
@click.option(
    "--stuck",
    is_flag=True,
    help="paid-looking but not settled: pending, needs review, or a settle event on file",
)
@click.option("--limit", type=click.IntRange(1, 10000), default=200, show_default=True)
@json_option
def orders_list(
    status: str | None,
    provider: str | None,
    email: str | None,
    since: str | None,
    stuck: bool,
    limit: int,
    as_json: bool,
) -> None:
    """List orders, newest first."""
    from tortoise.expressions import Q

    from gateway.db.models import InboxEvent, InboxOutcome, Order, OrderStatus

    settings = settings_and_logging()
    since_at = parse_since(since) if since else None

    async def work() -> list[dict[str, Any]]:
        query = Order.all()
        if status:
            query = query.filter(status=status)
        if provider:
            query = query.filter(provider=provider)
        if email:
            query = query.filter(buyer_email__iexact=email)
        if since_at:
            query = query.filter(created_at__gte=since_at)
        if stuck:
            # A settle the gateway parked (amount/currency mismatch, ...) leaves the order
            # unsettled with an inbox row of kind "settled"; pending / needs_review orders
            # have money in flight; paid_minor > 0 is a partial payment.
            settle_parked = await InboxEvent.filter(
                kind="settled", outcome=InboxOutcome.PARKED
            ).values_list("order_id", flat=True)
            query = query.filter(
                Q(status__in=[OrderStatus.PENDING, OrderStatus.NEEDS_REVIEW])
                | Q(paid_minor__gt=0, status__in=[OrderStatus.CREATED, OrderStatus.FAILED])
                | Q(id__in=[i for i in settle_parked if i], status__not=OrderStatus.SETTLED)
            ).exclude(status=OrderStatus.REVERSED)
        rows = await query.order_by("-created_at", "-id").limit(limit)
        return [_row(order) for order in rows]

    rows = with_db(settings, work)
    emit_table(rows, LIST_COLUMNS, as_json=as_json, title="orders", empty="no orders match")


def _row(order: Any) -> dict[str, Any]:
    from config.money import format_decimal

    return {
        "id": order.id,
        "created_at": iso(order.created_at),
        "status": order.status.value,
        "provider": order.provider,
        "product": order.product_id,
        "amount": f"{format_decimal(order.amount_minor, order.currency)} {order.currency}",
        "email": order.buyer_email,
        "paid_minor": order.paid_minor,
        "provider_ref": order.provider_ref,
        "payment_ref": order.payment_ref,
        "settled_at": iso(order.settled_at),
        "updated_at": iso(order.updated_at),
        "notes": order.notes or None,
        "review_reason": order.review_reason,
    }


@orders.command("show")
@click.argument("order_id")
@json_option
def orders_show(order_id: str, as_json: bool) -> None:
    """One order: its fields, inbox events, license (with the key) and emails."""
    from gateway.db.models import InboxEvent, License, Order, OutboxEmail

    settings = settings_and_logging()

    async def work() -> dict[str, Any] | None:
        order = await Order.get_or_none(id=order_id)
        if order is None:
            return None
        doc = _row(order)
        doc["status_url"] = order.status_url(settings.public_url)
        events = await InboxEvent.filter(order_id=order.id).order_by("received_at", "id")
        doc["events"] = [
            {
                "id": e.id,
                "received_at": iso(e.received_at),
                "provider": e.provider,
                "kind": e.kind,
                "event": e.dedupe_key,
                "outcome": e.outcome.value,
                "detail": e.detail,
            }
            for e in events
        ]
        lic = await License.get_or_none(order_id=order.id)
        doc["license"] = (
            None
            if lic is None
            else {
                "id": lic.id,
                "key": lic.key,
                "status": lic.status.value,
                "tier": lic.tier,
                "seat_limit": lic.seat_limit,
                "revoke_reason": lic.revoke_reason,
            }
        )
        emails = await OutboxEmail.filter(order_id=order.id).order_by("id")
        doc["emails"] = [
            {
                "id": m.id,
                "kind": m.kind,
                "to": m.to_address,
                "status": m.status.value,
                "attempts": m.attempts,
                "sent_at": iso(m.sent_at),
                "last_error": m.last_error,
            }
            for m in emails
        ]
        return doc

    doc = with_db(settings, work)
    if doc is None:
        raise click.ClickException(f"no order {order_id}")
    if as_json:
        emit_object(doc, as_json=True)
        return
    nested = {k: doc.pop(k) for k in ("events", "license", "emails")}
    emit_object(doc, as_json=False)
    lic = nested["license"]
    click.echo(
        "license  -"
        if lic is None
        else f"license  {lic['key']} ({lic['status']}, {lic['tier']}, {lic['seat_limit']} seats)"
    )
    emit_table(
        nested["events"],
        ["id", "received_at", "kind", "event", "outcome", "detail"],
        as_json=False,
        title="inbox events",
        empty="no inbox events",
    )
    emit_table(
        nested["emails"],
        ["id", "kind", "to", "status", "attempts", "sent_at", "last_error"],
        as_json=False,
        title="emails",
        empty="no emails",
    )
