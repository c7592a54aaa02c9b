"""`orders list|show`: what was bought, how it stands, and what the providers told us."""

from __future__ import annotations

from typing import Any

import click

from config.money import format_decimal
from gateway.cli.common import (
    emit_object,
    emit_table,
    iso,
    json_option,
    parse_since,
    settings_and_logging,
    with_db,
)
from gateway.db.models import InboxEvent, License, Order, OutboxEmail
from gateway.payments.orders import OrderFilter, OrderRecord, list_orders, order_record

ORDER_STATUSES = ["created", "pending", "settled", "failed", "reversed", "needs_review"]
LIST_COLUMNS = ["id", "created_at", "status", "provider", "product", "amount", "email"]


@click.group()
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
    settings = settings_and_logging()
    wanted = OrderFilter(
        status=status,
        provider=provider,
        email=email,
        created_since=parse_since(since) if since else None,
        stuck=stuck,
        limit=limit,
    )

    async def work() -> list[dict[str, Any]]:
        return [_row(order) for order in await list_orders(wanted)]

    rows = with_db(settings, work)
    emit_table(rows, LIST_COLUMNS, as_json=as_json, title="orders", empty="no orders match")


@orders.command("show")
@click.argument("order_id")
@json_option
def orders_show(order_id: str, as_json: bool) -> None:
    """One order: its fields, inbox events, license (with the key) and emails."""
    settings = settings_and_logging()

    async def work() -> dict[str, Any] | None:
        record = await order_record(order_id)
        return None if record is None else _doc(record, settings.public_url)

    doc = with_db(settings, work)
    if doc is None:
        raise click.ClickException(f"no order {order_id}")
    if as_json:
        emit_object(doc, as_json=True)
    else:
        _print(doc)


def _row(order: Order) -> dict[str, Any]:
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


def _doc(record: OrderRecord, public_url: str) -> dict[str, Any]:
    doc = _row(record.order)
    doc["status_url"] = record.order.status_url(public_url)
    doc["events"] = [_event(e) for e in record.events]
    doc["license"] = None if record.license is None else _license(record.license)
    doc["emails"] = [_email(m) for m in record.emails]
    return doc


def _event(event: InboxEvent) -> dict[str, Any]:
    return {
        "id": event.id,
        "received_at": iso(event.received_at),
        "provider": event.provider,
        "kind": event.kind,
        "event": event.dedupe_key,
        "outcome": event.outcome.value,
        "detail": event.detail,
    }


def _license(lic: License) -> dict[str, Any]:
    return {
        "id": lic.id,
        "key": lic.key,
        "status": lic.status.value,
        "tier": lic.tier,
        "seat_limit": lic.seat_limit,
        "revoke_reason": lic.revoke_reason,
    }


def _email(email: OutboxEmail) -> dict[str, Any]:
    return {
        "id": email.id,
        "kind": email.kind,
        "to": email.to_address,
        "status": email.status.value,
        "attempts": email.attempts,
        "sent_at": iso(email.sent_at),
        "last_error": email.last_error,
    }


def _print(doc: dict[str, Any]) -> None:
    """The order's fields as `key: value` lines, its license on one line, then two tables."""
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
