"""The operator's view of orders: listings with filters, "stuck" orders (paid-looking but
not settled), and one order with everything on file about it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from tortoise.expressions import Q

from gateway.db.models import InboxEvent, InboxOutcome, License, Order, OrderStatus, OutboxEmail


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderFilter:
    status: str | None = None
    provider: str | None = None
    # Matched case-insensitively.
    email: str | None = None
    created_since: datetime | None = None
    stuck: bool = False
    limit: int = 200


async def list_orders(wanted: OrderFilter) -> list[Order]:
    """Orders matching every filter given, newest first."""
    query = Order.all()
    if wanted.status:
        query = query.filter(status=wanted.status)
    if wanted.provider:
        query = query.filter(provider=wanted.provider)
    if wanted.email:
        query = query.filter(buyer_email__iexact=wanted.email)
    if wanted.created_since:
        query = query.filter(created_at__gte=wanted.created_since)
    if wanted.stuck:
        query = query.filter(await _stuck()).exclude(status=OrderStatus.REVERSED)
    return await query.order_by("-created_at", "-id").limit(wanted.limit)


async def _stuck() -> Q:
    # A settle the gateway parked (amount/currency mismatch, ...) leaves the order
    # unsettled with an inbox row of kind "settled"; pending / needs_review orders
    # have money in flight; paid_minor > 0 is a partial payment.
    settle_parked = await InboxEvent.filter(
        kind="settled", outcome=InboxOutcome.PARKED
    ).values_list("order_id", flat=True)
    return (
        Q(status__in=[OrderStatus.PENDING, OrderStatus.NEEDS_REVIEW])
        | Q(paid_minor__gt=0, status__in=[OrderStatus.CREATED, OrderStatus.FAILED])
        | Q(id__in=[i for i in settle_parked if i], status__not=OrderStatus.SETTLED)
    )


@dataclass(frozen=True, slots=True)
class OrderRecord:
    """One order with its inbox events (oldest first), its license and its emails."""

    order: Order
    events: list[InboxEvent]
    license: License | None
    emails: list[OutboxEmail]


async def order_record(order_id: str) -> OrderRecord | None:
    order = await Order.get_or_none(id=order_id)
    if order is None:
        return None
    return OrderRecord(
        order=order,
        events=await InboxEvent.filter(order_id=order.id).order_by("received_at", "id"),
        license=await License.get_or_none(order_id=order.id),
        emails=await OutboxEmail.filter(order_id=order.id).order_by("id"),
    )
