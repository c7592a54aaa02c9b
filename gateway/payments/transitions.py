"""The order state machine: one row per event type, read like the diagram in ARCHITECTURE.

    created -> pending -> settled -> reversed        created/pending -> failed
    failed -> settled (late crypto money)            reversed -> settled (dispute won)
    created/pending/failed -> needs_review -> settled (a human, or the seller, decides)

An event whose order is in none of its row's from-states changes nothing, so a late or
out-of-order event never moves an order backwards. Before that, every event must be about
the order's own checkout or payment (`integrity`), and a row's guard may answer first.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar

from tortoise.backends.base.client import BaseDBAsyncClient

from config.catalog import Catalog
from config.money import format_decimal
from gateway.db.models import License, LicenseStatus, Order, OrderStatus
from gateway.payments.inbox import release_parked
from gateway.payments.integrity import PAYMENT_EVENTS, binding_problem, settlement_problem
from gateway.payments.results import ApplyResult, Result, log, parked
from providers.events import (
    ActionableEvent,
    PaymentFailed,
    PaymentNeedsReview,
    PaymentPending,
    PaymentReinstated,
    PaymentReversed,
    PaymentSettled,
)

CREATED, PENDING, SETTLED = OrderStatus.CREATED, OrderStatus.PENDING, OrderStatus.SETTLED
FAILED, REVERSED = OrderStatus.FAILED, OrderStatus.REVERSED
NEEDS_REVIEW = OrderStatus.NEEDS_REVIEW

E = TypeVar("E", bound=ActionableEvent)


class Issuer(Protocol):
    """What a settlement needs from the app: the catalog and the one license issuer."""

    catalog: Catalog

    async def issue(self, conn: BaseDBAsyncClient, order: Order) -> bool:
        """Issue the order's license and email in `conn`'s transaction (True once issued)."""
        ...


@dataclass(slots=True)
class Step:
    """One event meeting its order, inside the event's transaction."""

    conn: BaseDBAsyncClient
    order: Order
    now: datetime
    issuer: Issuer
    previous: OrderStatus
    update: list[str] = field(default_factory=lambda: ["status", "updated_at"])
    issued: bool = False
    revoked: bool = False

    async def save(self) -> None:
        await self.order.save(using_db=self.conn, update_fields=self.update)

    def add_note(self, *notes: str) -> None:
        self.order.notes = "; ".join(filter(None, [self.order.notes, *notes]))
        self.update.append("notes")

    def claim_payment(self, event: ActionableEvent) -> None:
        """Name the payment a later refund or dispute must match, unless one is named.
        Where the checkout itself is the payment (a BTCPay invoice), the event may name
        none, and the checkout id stands for it."""
        if not self.order.payment_ref:
            self.order.payment_ref = event.payment_ref or event.provider_ref
            self.update.append("payment_ref")


@dataclass(frozen=True, slots=True)
class Transition(Generic[E]):
    event: type[E]
    kind: str
    sources: frozenset[OrderStatus]
    target: OrderStatus
    # Copies the event's facts onto the order, saves it, then issues / revokes / reinstates.
    handler: Callable[[Step, E], Awaitable[None]]
    # Asked before the from-states: another outcome for this event (parked, a no-op), or None.
    guard: Callable[[Step, E], Awaitable[ApplyResult | None]] | None = None


def _row(
    event: type[E],
    kind: str,
    sources: set[OrderStatus],
    target: OrderStatus,
    handler: Callable[[Step, E], Awaitable[None]],
    guard: Callable[[Step, E], Awaitable[ApplyResult | None]] | None = None,
) -> Transition[Any]:
    # One place where a row's event type, handler and guard are checked against each other.
    return Transition(event, kind, frozenset(sources), target, handler, guard)


def _unchanged(order: Order, kind: str) -> ApplyResult:
    return ApplyResult(Result.NOOP, order.id, f"order is {order.status}; {kind} changes nothing")


# -- guards ------------------------------------------------------------------------------


async def _unless_mismatched(step: Step, event: PaymentSettled) -> ApplyResult | None:
    """Money on the order's own checkout that does not match it: a human decides."""
    order = step.order
    problem = settlement_problem(step.issuer.catalog, order, event)
    if not problem:
        return None
    # Not this row's transition: the reason is recorded, and the order enters needs_review
    # only from where that may be entered (a settled order keeps its status; the event is
    # parked either way).
    order.review_reason = problem
    step.update = ["review_reason", "updated_at"]
    # This money is on the order's own checkout: if a human issues after review, a later
    # refund of it must still revoke.
    step.claim_payment(event)
    if order.status in TRANSITIONS[PaymentNeedsReview].sources:
        order.status = NEEDS_REVIEW
        step.update.append("status")
    await step.save()
    return parked(event, order, problem)


async def _unless_never_settled(step: Step, event: PaymentReversed) -> ApplyResult | None:
    if event.settled_only and step.order.status != SETTLED:
        # Nothing was settled, so there is no settlement to withdraw: the failure that
        # came with it is the whole story (an unpaid order marked invalid ends failed).
        return ApplyResult(Result.NOOP, step.order.id, f"order is {step.order.status}; not settled")
    return None


async def _unless_review_awaits_seller(step: Step, event: PaymentFailed) -> ApplyResult | None:
    # Only the seller's own decision at the provider (BTCPay "marked invalid") ends a
    # review; an expiry or a decline leaves it to the human.
    if step.order.status == NEEDS_REVIEW and not event.by_seller:
        return _unchanged(step.order, "failed")
    return None


# -- handlers ----------------------------------------------------------------------------


async def _on_pending(step: Step, event: PaymentPending) -> None:
    if event.amount_paid_minor is not None:
        step.order.paid_minor = event.amount_paid_minor
        step.update.append("paid_minor")
    await step.save()


async def _on_settled(step: Step, event: PaymentSettled) -> None:
    # Only the settling event names the payment a later refund or dispute must match.
    step.claim_payment(event)
    step.order.settled_at = step.now
    step.update.append("settled_at")
    if event.notes:
        step.add_note(*event.notes)
    await step.save()
    step.issued = await step.issuer.issue(step.conn, step.order)


async def _on_failed(step: Step, event: PaymentFailed) -> None:
    step.add_note(f"failed: {event.reason}")
    await step.save()


async def _on_reversed(step: Step, event: PaymentReversed) -> None:
    await step.save()
    await (
        License.filter(order_id=step.order.id)
        .using_db(step.conn)
        .update(status=LicenseStatus.REVOKED, revoked_at=step.now, revoke_reason=event.reason)
    )
    step.revoked = step.previous == SETTLED


async def _on_reinstated(step: Step, event: PaymentReinstated) -> None:
    await step.save()
    await (
        License.filter(order_id=step.order.id)
        .using_db(step.conn)
        .update(status=LicenseStatus.ACTIVE, revoked_at=None, revoke_reason=None)
    )


async def _on_needs_review(step: Step, event: PaymentNeedsReview) -> None:
    order = step.order
    order.review_reason = event.reason
    step.update.append("review_reason")
    if event.amount_minor is not None:
        # What the provider counts as paid is what the reviewer checks first; the
        # review list shows only the reason, so it goes there, and on the order.
        order.paid_minor = event.amount_minor
        currency = event.currency or order.currency
        order.review_reason += (
            f"; {event.provider.value} counts "
            f"{format_decimal(event.amount_minor, currency)} {currency} paid"
        )
        step.update.append("paid_minor")
    # The money under review is on the order's own checkout (a late BTCPay payment): if a
    # human issues, a later refund of it must still revoke.
    step.claim_payment(event)
    await step.save()


# fmt: off
_ROWS = (
    #    event               kind            from                                      to
    _row(PaymentPending,     "pending",      {CREATED},                                PENDING,
         _on_pending),
    _row(PaymentSettled,     "settled",      {CREATED, PENDING, FAILED, NEEDS_REVIEW}, SETTLED,
         _on_settled, guard=_unless_mismatched),
    _row(PaymentFailed,      "failed",       {CREATED, PENDING, NEEDS_REVIEW},         FAILED,
         _on_failed, guard=_unless_review_awaits_seller),
    _row(PaymentReversed,    "reversed",     {CREATED, PENDING, FAILED, SETTLED},      REVERSED,
         _on_reversed, guard=_unless_never_settled),
    # The way back, for exactly a won dispute or a failed refund of the settling payment.
    _row(PaymentReinstated,  "reinstated",   {REVERSED},                               SETTLED,
         _on_reinstated),
    _row(PaymentNeedsReview, "needs_review", {CREATED, PENDING, FAILED},               NEEDS_REVIEW,
         _on_needs_review),
)
# fmt: on
TRANSITIONS: dict[type[ActionableEvent], Transition[Any]] = {row.event: row for row in _ROWS}


def kind_of(event: ActionableEvent) -> str:
    """The event's name in the inbox and in messages ("settled", "needs_review", ...)."""
    return TRANSITIONS[type(event)].kind


async def transition(
    conn: BaseDBAsyncClient, order: Order, event: ActionableEvent, now: datetime, issuer: Issuer
) -> ApplyResult:
    """Apply `event` to `order` (row-locked by the caller) inside the event's transaction."""
    row = TRANSITIONS[type(event)]
    foreign = binding_problem(order, event, row.kind)
    if foreign:
        # Someone else's checkout or payment naming our order (a Payment Link opened with
        # `?client_reference_id=<order>`): recorded, and the order left exactly as it was.
        return parked(event, order, foreign)
    step = Step(conn=conn, order=order, now=now, issuer=issuer, previous=order.status)
    if row.guard is not None and (answer := await row.guard(step, event)) is not None:
        return answer
    if order.status not in row.sources:
        return _unchanged(order, row.kind)
    order.status = row.target
    if order.provider_ref is None and not isinstance(event, PAYMENT_EVENTS):
        order.provider_ref = event.provider_ref
        step.update.append("provider_ref")
    await row.handler(step, event)
    if step.previous == NEEDS_REVIEW:
        # The provider reports the decision a human was asked to make (the seller marked
        # the BTCPay invoice settled, or invalid, after checking it): the order's parked
        # events leave the review list, as after `review resolve`.
        await release_parked(conn, order.id, now)
    log.info(
        "order %s: %s -> %s",
        order.id,
        step.previous,
        order.status,
        extra={"provider": event.provider.value, "order_id": order.id},
    )
    return ApplyResult(
        Result.APPLIED,
        order.id,
        f"{step.previous} -> {order.status}",
        license_issued=step.issued,
        license_revoked=step.revoked,
    )
