"""The one apply path: every normalised event, from any provider, webhook or reconciler.

Each event is applied in one database transaction:

    order row (SELECT ... FOR UPDATE)  ->  state machine  ->  on first settlement: license
    (unique per order) + outbox email (unique per order+kind) [gateway.licenses]  ->  inbox
    row (unique provider+dedupe_key), which makes a redelivery roll back as a duplicate

All of it commits together or not at all. Exactly-once rests on those unique constraints,
so any number of workers and hosts sharing one PostgreSQL stay correct; `SELECT ... FOR
UPDATE` on the order row serialises concurrent events for one order on PostgreSQL (SQLite
serialises whole write transactions anyway).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from config.catalog import Catalog
from gateway.licenses import KeyFactory, generate_key, issue_license
from gateway.models import (
    InboxEvent,
    InboxOutcome,
    License,
    LicenseStatus,
    Order,
    OrderStatus,
)
from providers.events import (
    ActionableEvent,
    PaymentFailed,
    PaymentNeedsReview,
    PaymentPending,
    PaymentReversed,
    PaymentSettled,
)
from providers.ids import is_order_id

log = logging.getLogger(__name__)

# Statuses from which each event may move the order. Anything else is a no-op, so a late or
# out-of-order event never moves an order backwards.
_FROM = {
    PaymentPending: {OrderStatus.CREATED},
    PaymentSettled: {OrderStatus.CREATED, OrderStatus.PENDING, OrderStatus.FAILED},
    PaymentFailed: {OrderStatus.CREATED, OrderStatus.PENDING},
    PaymentReversed: {
        OrderStatus.CREATED,
        OrderStatus.PENDING,
        OrderStatus.FAILED,
        OrderStatus.SETTLED,
    },
    PaymentNeedsReview: {OrderStatus.CREATED, OrderStatus.PENDING, OrderStatus.FAILED},
}
_TO = {
    PaymentPending: OrderStatus.PENDING,
    PaymentSettled: OrderStatus.SETTLED,
    PaymentFailed: OrderStatus.FAILED,
    PaymentReversed: OrderStatus.REVERSED,
    PaymentNeedsReview: OrderStatus.NEEDS_REVIEW,
}
_KIND = {
    PaymentPending: "pending",
    PaymentSettled: "settled",
    PaymentFailed: "failed",
    PaymentReversed: "reversed",
    PaymentNeedsReview: "needs_review",
}


def _storable_id(order_id: str | None) -> str | None:
    """A foreign order id as the operator's clue, if it fits the column (and has no NUL)."""
    if order_id is None or len(order_id) > 40 or "\x00" in order_id:
        return None
    return order_id


class Result(StrEnum):
    APPLIED = "applied"
    NOOP = "noop"
    PARKED = "parked"
    DUPLICATE = "duplicate"


@dataclass(frozen=True, slots=True)
class ApplyResult:
    result: Result
    order_id: str | None
    detail: str = ""
    license_issued: bool = False


class Applier:
    """Applies events; built once per app with the catalog and the public URL."""

    def __init__(
        self,
        catalog: Catalog,
        *,
        public_url: str,
        help_url: str | None = None,
        new_key: KeyFactory = generate_key,
    ) -> None:
        self.catalog = catalog
        self.public_url = public_url.rstrip("/")
        self.help_url = help_url
        self.new_key = new_key

    async def apply(self, event: ActionableEvent, raw: bytes) -> ApplyResult:
        """Apply one event exactly once. Raises only for database failures."""
        # A unique-key violation rolls the whole event back. If the inbox row exists, this
        # event was applied before (or by a concurrent delivery): answer "duplicate".
        # Otherwise it was a license key clash (~2^-79): re-run the event with a new key.
        for attempt in range(3):
            try:
                async with in_transaction() as conn:
                    return await self._apply(conn, event, raw)
            except IntegrityError:
                if await InboxEvent.exists(
                    provider=event.provider.value, dedupe_key=event.dedupe_key
                ):
                    return ApplyResult(Result.DUPLICATE, event.order_id, "already received")
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def _apply(
        self, conn: BaseDBAsyncClient, event: ActionableEvent, raw: bytes
    ) -> ApplyResult:
        now = datetime.now(UTC)
        order = await self._find_order(conn, event)
        if order is None:
            result = self._parked(event, None, "no order matches this event")
        else:
            result = await self._transition(conn, order, event, now)
        # Written last, once, with its outcome: a duplicate first waits on the order's row
        # lock, finds nothing to change, and then loses here at the unique index, which
        # rolls back whatever it did. One statement instead of an insert plus an update.
        await InboxEvent.create(
            using_db=conn,
            provider=event.provider.value,
            dedupe_key=event.dedupe_key,
            kind=_KIND[type(event)],
            order_id=result.order_id or _storable_id(event.order_id),
            provider_ref=event.provider_ref,
            payload=raw.decode("utf-8", errors="replace"),
            outcome=InboxOutcome(result.result),
            detail=result.detail,
            handled_at=now,
        )
        return result

    async def _find_order(self, conn: BaseDBAsyncClient, event: ActionableEvent) -> Order | None:
        query = Order.select_for_update().using_db(conn)
        if event.order_id:
            # Not our id shape (a foreign Payment Link, another app's invoice, a NUL byte):
            # not an order of ours, and nothing to ask the database about.
            if not is_order_id(event.order_id):
                return None
            return await query.filter(id=event.order_id).first()
        if event.payment_ref:
            found = await query.filter(payment_ref=event.payment_ref).first()
            if found is not None:
                return found
        return await query.filter(
            provider=event.provider.value, provider_ref=event.provider_ref
        ).first()

    def _parked(self, event: ActionableEvent, order: Order | None, reason: str) -> ApplyResult:
        order_id = order.id if order else event.order_id
        # In the message itself, not only in `extra`: the operator reads plain log lines.
        log.warning(
            "event parked for review: order %s, provider %s, event %s: %s",
            order_id,
            event.provider.value,
            event.dedupe_key,
            reason,
            extra={"provider": event.provider.value, "order_id": order_id},
        )
        return ApplyResult(Result.PARKED, order.id if order else None, reason)

    async def _transition(
        self, conn: BaseDBAsyncClient, order: Order, event: ActionableEvent, now: datetime
    ) -> ApplyResult:
        if order.provider != event.provider.value:
            return self._parked(
                event, order, f"order was placed with {order.provider}, not {event.provider}"
            )
        if isinstance(event, PaymentSettled):
            problem = self._settlement_problem(order, event)
            if problem:
                order.review_reason = problem
                await order.save(using_db=conn, update_fields=["review_reason", "updated_at"])
                return self._parked(event, order, problem)
        if order.status not in _FROM[type(event)]:
            detail = f"order is {order.status}; {_KIND[type(event)]} changes nothing"
            return ApplyResult(Result.NOOP, order.id, detail)

        previous = order.status
        order.status = _TO[type(event)]
        update = ["status", "updated_at"]
        if event.payment_ref and not order.payment_ref:
            order.payment_ref = event.payment_ref
            update.append("payment_ref")
        if isinstance(event, PaymentPending) and event.amount_paid_minor is not None:
            order.paid_minor = event.amount_paid_minor
            update.append("paid_minor")
        if order.provider_ref is None and not isinstance(event, PaymentReversed):
            order.provider_ref = event.provider_ref
            update.append("provider_ref")
        issued = False
        if isinstance(event, PaymentSettled):
            order.settled_at = now
            update.append("settled_at")
            if event.notes:
                order.notes = "; ".join(filter(None, [order.notes, *event.notes]))
                update.append("notes")
            await order.save(using_db=conn, update_fields=update)
            issued = await self._issue(conn, order)
        else:
            await order.save(using_db=conn, update_fields=update)
            if isinstance(event, PaymentReversed):
                await (
                    License.filter(order_id=order.id)
                    .using_db(conn)
                    .update(
                        status=LicenseStatus.REVOKED, revoked_at=now, revoke_reason=event.reason
                    )
                )
        log.info(
            "order %s: %s -> %s",
            order.id,
            previous,
            order.status,
            extra={"provider": event.provider.value, "order_id": order.id},
        )
        return ApplyResult(
            Result.APPLIED, order.id, f"{previous} -> {order.status}", license_issued=issued
        )

    def _settlement_problem(self, order: Order, event: PaymentSettled) -> str | None:
        if event.currency.upper() != order.currency:
            return f"currency {event.currency} does not match order currency {order.currency}"
        if event.amount_minor < order.amount_minor:
            return (
                f"paid {event.amount_minor} {event.currency} minor units, "
                f"order is {order.amount_minor}"
            )
        if order.provider_ref is not None and event.provider_ref != order.provider_ref:
            return (
                f"settlement is for {event.provider_ref}, order's checkout is {order.provider_ref}"
            )
        if self.catalog.get(order.product_id) is None:
            # Entitlements come from the catalog; without them a human decides what to issue.
            return f"product {order.product_id} is no longer in the catalog"
        return None

    async def _issue(self, conn: BaseDBAsyncClient, order: Order) -> bool:
        product = self.catalog.get(order.product_id)
        assert product is not None  # checked by _settlement_problem before any change
        await issue_license(
            conn,
            order,
            product,
            new_key=self.new_key,
            status_url=f"{self.public_url}/orders/{order.id}?token={order.status_token}",
            help_url=self.help_url,
        )
        return True
