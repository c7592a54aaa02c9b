"""Review: what needs a human (orders in needs_review, parked events) and the decision.

A decision goes through the same issuer as a settlement, so a license is issued at most
once: the order's row lock, the status check and the unique license per order.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from tortoise.transactions import in_transaction

from gateway.db.models import InboxEvent, InboxOutcome, Order, OrderStatus
from gateway.payments.inbox import release_parked
from gateway.payments.results import ApplyResult, Result
from gateway.payments.transitions import Issuer
from providers.ids import is_order_id

# The apply path's logger: a decision is logged like any other transition.
log = logging.getLogger("gateway.payments.apply")


@dataclass(frozen=True, slots=True)
class ReviewItem:
    """One line of the review list: an order (`type` "order") or a parked event ("event")."""

    type: str
    id: str | int
    received_at: str
    provider: str
    order_id: str | None
    kind: str
    event: str | None
    reason: str


async def needs_review() -> list[ReviewItem]:
    """Orders in needs_review (oldest change first), then parked events (oldest first)."""
    orders = await Order.filter(status=OrderStatus.NEEDS_REVIEW).order_by("updated_at")
    events = await InboxEvent.filter(outcome=InboxOutcome.PARKED).order_by("received_at", "id")
    items = [
        ReviewItem(
            type="order",
            id=o.id,
            received_at=o.updated_at.isoformat(timespec="seconds"),
            provider=o.provider,
            order_id=o.id,
            kind=o.status.value,
            event=o.provider_ref,
            reason=(o.review_reason or "").replace("\n", " "),
        )
        for o in orders
    ]
    items += [
        ReviewItem(
            type="event",
            id=e.id,
            received_at=e.received_at.isoformat(timespec="seconds"),
            provider=e.provider,
            order_id=e.order_id,
            kind=e.kind,
            event=e.dedupe_key,
            reason=e.detail.replace("\n", " "),
        )
        for e in events
    ]
    return items


async def resolve_review(
    issuer: Issuer, order_id: str, *, issue: bool, note: str = ""
) -> ApplyResult:
    """A human's decision on a `needs_review` order: issue the license or dismiss it
    (failed, with the reason). Its parked events leave the review list."""
    if not is_order_id(order_id):
        return ApplyResult(Result.NOOP, None, "not an order id")
    now = datetime.now(UTC)
    async with in_transaction() as conn:
        order = await Order.select_for_update().using_db(conn).filter(id=order_id).first()
        if order is None:
            return ApplyResult(Result.NOOP, None, "no such order")
        if order.status != OrderStatus.NEEDS_REVIEW:
            return ApplyResult(Result.NOOP, order.id, f"order is {order.status}, not in review")
        decision = "issued" if issue else "dismissed"
        text = f"{decision} after review" + (f": {note}" if note else "")
        order.notes = "; ".join(filter(None, [order.notes, text]))
        update = ["status", "notes", "updated_at"]
        if issue:
            if issuer.catalog.get(order.product_id) is None:
                return ApplyResult(
                    Result.NOOP, order.id, f"product {order.product_id} is not in the catalog"
                )
            order.status = OrderStatus.SETTLED
            order.settled_at = now
            update.append("settled_at")
        else:
            order.status = OrderStatus.FAILED
            order.review_reason = text
            update.append("review_reason")
        await order.save(using_db=conn, update_fields=update)
        issued = await issuer.issue(conn, order) if issue else False
        await release_parked(conn, order.id, now)
    log.info(
        "order %s: needs_review -> %s (%s)",
        order.id,
        order.status,
        text,
        extra={"provider": order.provider, "order_id": order.id},
    )
    return ApplyResult(
        Result.APPLIED, order.id, f"needs_review -> {order.status}", license_issued=issued
    )
