"""The one apply path: every normalised event, from any provider, webhook or reconciler.

Each event is applied in one database transaction:

    order row (SELECT ... FOR UPDATE)  ->  state machine  ->  on first settlement: license
    (unique per order) + outbox email (unique per order+kind) [gateway.licenses.issuing]  ->  inbox
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
from config.money import format_decimal
from gateway.db.models import (
    InboxEvent,
    InboxOutcome,
    License,
    LicenseStatus,
    Order,
    OrderStatus,
)
from gateway.licenses.issuing import issue_license
from gateway.licenses.keys import KeyFactory, generate_key
from providers.events import (
    ActionableEvent,
    PaymentFailed,
    PaymentNeedsReview,
    PaymentPending,
    PaymentReinstated,
    PaymentReversed,
    PaymentSettled,
)
from providers.ids import is_order_id

log = logging.getLogger(__name__)

# Statuses from which each event may move the order. Anything else is a no-op, so a late or
# out-of-order event never moves an order backwards.
_FROM = {
    PaymentPending: {OrderStatus.CREATED},
    PaymentSettled: {
        OrderStatus.CREATED,
        OrderStatus.PENDING,
        OrderStatus.FAILED,
        OrderStatus.NEEDS_REVIEW,
    },
    PaymentFailed: {OrderStatus.CREATED, OrderStatus.PENDING},
    PaymentReversed: {
        OrderStatus.CREATED,
        OrderStatus.PENDING,
        OrderStatus.FAILED,
        OrderStatus.SETTLED,
    },
    # The way back, for exactly a won dispute or a failed refund of the settling payment.
    PaymentReinstated: {OrderStatus.REVERSED},
    PaymentNeedsReview: {OrderStatus.CREATED, OrderStatus.PENDING, OrderStatus.FAILED},
}
_TO = {
    PaymentPending: OrderStatus.PENDING,
    PaymentSettled: OrderStatus.SETTLED,
    PaymentFailed: OrderStatus.FAILED,
    PaymentReversed: OrderStatus.REVERSED,
    PaymentReinstated: OrderStatus.SETTLED,
    PaymentNeedsReview: OrderStatus.NEEDS_REVIEW,
}
_KIND = {
    PaymentPending: "pending",
    PaymentSettled: "settled",
    PaymentFailed: "failed",
    PaymentReversed: "reversed",
    PaymentReinstated: "reinstated",
    PaymentNeedsReview: "needs_review",
}
# Events that name the payment (its payment_ref), not the checkout.
_PAYMENT_EVENTS = (PaymentReversed, PaymentReinstated)


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
        foreign = self._binding_problem(order, event)
        if foreign:
            # Someone else's checkout or payment naming our order (a Payment Link opened with
            # `?client_reference_id=<order>`): recorded, and the order left exactly as it was.
            return self._parked(event, order, foreign)
        if isinstance(event, PaymentSettled):
            problem = self._settlement_problem(order, event)
            if problem:
                return await self._needs_review(conn, order, event, problem)
        if (
            isinstance(event, PaymentReversed)
            and event.settled_only
            and order.status != OrderStatus.SETTLED
        ):
            # Nothing was settled, so there is no settlement to withdraw: the failure that
            # came with it is the whole story (an unpaid order marked invalid ends failed).
            return ApplyResult(Result.NOOP, order.id, f"order is {order.status}; not settled")
        seller_says_no = (
            isinstance(event, PaymentFailed)
            and event.by_seller
            and order.status == OrderStatus.NEEDS_REVIEW
        )
        if order.status not in _FROM[type(event)] and not seller_says_no:
            detail = f"order is {order.status}; {_KIND[type(event)]} changes nothing"
            return ApplyResult(Result.NOOP, order.id, detail)

        previous = order.status
        order.status = _TO[type(event)]
        update = ["status", "updated_at"]
        if isinstance(event, PaymentNeedsReview):
            order.review_reason = event.reason
            update.append("review_reason")
            if event.amount_minor is not None:
                # What the provider counts as paid is what the reviewer checks first; the
                # review list shows only the reason, so it goes there, and on the order.
                order.paid_minor = event.amount_minor
                currency = event.currency or order.currency
                order.review_reason += (
                    f"; {event.provider.value} counts "
                    f"{format_decimal(event.amount_minor, currency)} {currency} paid"
                )
                update.append("paid_minor")
            if not order.payment_ref:
                # The money under review is on the order's own checkout (a late BTCPay
                # payment): if a human issues, a later refund of it must still revoke.
                order.payment_ref = event.payment_ref or event.provider_ref
                update.append("payment_ref")
        if isinstance(event, PaymentFailed):
            order.notes = "; ".join(filter(None, [order.notes, f"failed: {event.reason}"]))
            update.append("notes")
        # Only the settling event names the payment a later refund or dispute must match.
        # Where the checkout itself is the payment (a BTCPay invoice), the event may name
        # none, and the checkout id stands for it.
        if isinstance(event, PaymentSettled) and not order.payment_ref:
            order.payment_ref = event.payment_ref or event.provider_ref
            update.append("payment_ref")
        if isinstance(event, PaymentPending) and event.amount_paid_minor is not None:
            order.paid_minor = event.amount_paid_minor
            update.append("paid_minor")
        if order.provider_ref is None and not isinstance(event, _PAYMENT_EVENTS):
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
            elif isinstance(event, PaymentReinstated):
                await (
                    License.filter(order_id=order.id)
                    .using_db(conn)
                    .update(status=LicenseStatus.ACTIVE, revoked_at=None, revoke_reason=None)
                )
        if previous == OrderStatus.NEEDS_REVIEW:
            # The provider reports the decision a human was asked to make (the seller marked
            # the BTCPay invoice settled, or invalid, after checking it): the order's parked
            # events leave the review list, as after `review resolve`.
            await (
                InboxEvent.filter(order_id=order.id, outcome=InboxOutcome.PARKED)
                .using_db(conn)
                .update(outcome=InboxOutcome.NOOP, handled_at=now)
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

    @staticmethod
    def _binding_problem(order: Order, event: ActionableEvent) -> str | None:
        """Why `event` is not about this order's own checkout or payment, or None."""
        if isinstance(event, _PAYMENT_EVENTS):
            if order.payment_ref is None and order.status != OrderStatus.SETTLED:
                # A refund delivered before the settlement (Stripe does not order events):
                # accepted when the provider named this order from data only we set (Stripe
                # payment intent metadata), so the late settlement finds it reversed. Never a
                # reinstatement: that would settle an order that has no license.
                if isinstance(event, PaymentReversed) and event.order_id == order.id:
                    return None
            elif event.payment_ref is not None and event.payment_ref == order.payment_ref:
                return None
            return (
                f"{_KIND[type(event)]} of payment {event.payment_ref}, but the order was "
                f"settled by {order.payment_ref or 'an unknown payment'}"
            )
        if order.provider_ref is not None and event.provider_ref != order.provider_ref:
            return f"event is for {event.provider_ref}, order's checkout is {order.provider_ref}"
        return None

    async def _needs_review(
        self, conn: BaseDBAsyncClient, order: Order, event: PaymentSettled, problem: str
    ) -> ApplyResult:
        """Money arrived on the order's own checkout but does not match: a human decides."""
        order.review_reason = problem
        update = ["review_reason", "updated_at"]
        if not order.payment_ref:
            # This money is on the order's own checkout: if a human issues after review, a
            # later refund of it must still revoke.
            order.payment_ref = event.payment_ref or event.provider_ref
            update.append("payment_ref")
        if order.status in _FROM[PaymentNeedsReview]:
            order.status = OrderStatus.NEEDS_REVIEW
            update.append("status")
        await order.save(using_db=conn, update_fields=update)
        return self._parked(event, order, problem)

    def _settlement_problem(self, order: Order, event: PaymentSettled) -> str | None:
        if event.currency.upper() != order.currency:
            return f"currency {event.currency} does not match order currency {order.currency}"
        if event.amount_minor < order.amount_minor:
            return (
                f"paid {event.amount_minor} {event.currency} minor units, "
                f"order is {order.amount_minor}"
            )
        if self.catalog.get(order.product_id) is None:
            # Entitlements come from the catalog; without them a human decides what to issue.
            return f"product {order.product_id} is no longer in the catalog"
        return None

    async def resolve_review(self, order_id: str, *, issue: bool, note: str = "") -> ApplyResult:
        """A human's decision on a `needs_review` order: issue the license (through the same
        issuer, so at most once: the row lock, the status check and the unique license) or
        dismiss it (failed, with the reason). Its parked events leave the review list."""
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
                if self.catalog.get(order.product_id) is None:
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
            issued = await self._issue(conn, order) if issue else False
            await (
                InboxEvent.filter(order_id=order.id, outcome=InboxOutcome.PARKED)
                .using_db(conn)
                .update(outcome=InboxOutcome.NOOP, handled_at=now)
            )
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

    async def _issue(self, conn: BaseDBAsyncClient, order: Order) -> bool:
        product = self.catalog.get(order.product_id)
        assert product is not None  # checked by _settlement_problem before any change
        await issue_license(
            conn,
            order,
            product,
            new_key=self.new_key,
            status_url=order.status_url(self.public_url),
            help_url=self.help_url,
        )
        return True
