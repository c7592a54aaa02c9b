"""Provider-neutral payment events.

Every webhook (and every reconciliation poll) becomes one or more of these. Money is an
integer count of minor units plus an upper-case ISO currency. Raw payloads never ride on
an event: the gateway stores the bytes it received in its inbox.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TypedDict


class ProviderName(StrEnum):
    BTCPAY = "btcpay"
    STRIPE = "stripe"


@dataclass(frozen=True, slots=True, kw_only=True)
class _Event:
    provider: ProviderName
    # The provider's id for the checkout (BTCPay invoice id, Stripe Checkout Session id).
    provider_ref: str
    # Our order id as round-tripped through the provider; None when the payload lacks it
    # (a Stripe refund names only the payment intent).
    order_id: str | None
    # Stable across redeliveries of the same fact; the inbox is unique on (provider, key).
    dedupe_key: str
    occurred_at: datetime
    # Provider's id of the payment itself (Stripe payment intent), for linking reversals.
    payment_ref: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PaymentPending(_Event):
    """Payment seen but not final (unconfirmed on-chain, delayed card method), or only part
    of the price paid so far."""

    detail: str = ""
    # What the provider has seen paid so far, when it says (a partial bitcoin payment), so
    # the buyer can be told how much is still due.
    amount_paid_minor: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PaymentSettled(_Event):
    """Paid in full and final: deliver. Amount is what the provider says was charged."""

    amount_minor: int
    currency: str
    # Flags a seller wants on the order: "overpaid", "manually marked", "paid late".
    notes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class PaymentFailed(_Event):
    """Will not be paid as it stands: expired, invalid, declined."""

    reason: str
    # The seller's own decision at the provider (BTCPay "marked invalid"), so it also ends
    # a needs_review order, which an expiry or a decline never does.
    by_seller: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class PaymentReversed(_Event):
    """Money taken back after settlement: refund or dispute. Revokes the license."""

    reason: str
    # A withdrawn settlement (BTCPay "marked invalid"), not money going back: it reverses
    # only an order that settled. The same marking on an unpaid invoice is just a failure,
    # which the provider reports alongside, so the order must end `failed`, not `reversed`.
    settled_only: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class PaymentReinstated(_Event):
    """A reversal was undone (dispute won, refund failed): the money is ours again, so the
    license revoked for that reversal is active again. Only for the payment that settled."""

    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PaymentNeedsReview(_Event):
    """Money arrived that a human must judge before anything is issued (e.g. a full payment
    after expiry under the `review` policy, or one whose finality the API cannot show)."""

    reason: str
    amount_minor: int | None = None
    currency: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Ignored:
    """A verified event we deliberately do not act on; answered 2xx, not stored."""

    provider: ProviderName
    reason: str
    provider_ref: str | None = None
    # The event was genuine but the provider could not back it yet (an instant payment that
    # BTCPay has not marked PaidLate yet): the gateway re-checks the order soon.
    recheck_soon: bool = False


ActionableEvent = (
    PaymentPending
    | PaymentSettled
    | PaymentFailed
    | PaymentReversed
    | PaymentReinstated
    | PaymentNeedsReview
)
PaymentEvent = ActionableEvent | Ignored


class Subject(TypedDict):
    """The fields every event about one checkout shares, typed key by key: mypy checks a
    `**subject` into an event's constructor field by field, as it would keyword arguments
    (which a `dict[str, Any]` splat never got)."""

    provider: ProviderName
    provider_ref: str
    order_id: str | None
    occurred_at: datetime
    payment_ref: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class EventSubject:
    """What every event about one checkout shares: which provider, checkout, order, when.

    A provider builds it once per payload and asks it for events; each event's own facts
    are keyword arguments.
    """

    provider: ProviderName
    provider_ref: str
    order_id: str | None
    occurred_at: datetime
    payment_ref: str | None = None

    def _shared(self) -> Subject:
        return Subject(
            provider=self.provider,
            provider_ref=self.provider_ref,
            order_id=self.order_id,
            occurred_at=self.occurred_at,
            payment_ref=self.payment_ref,
        )

    def pending(
        self, *, dedupe_key: str, detail: str = "", amount_paid_minor: int | None = None
    ) -> PaymentPending:
        return PaymentPending(
            **self._shared(),
            dedupe_key=dedupe_key,
            detail=detail,
            amount_paid_minor=amount_paid_minor,
        )

    def settled(
        self, *, dedupe_key: str, amount_minor: int, currency: str, notes: tuple[str, ...] = ()
    ) -> PaymentSettled:
        return PaymentSettled(
            **self._shared(),
            dedupe_key=dedupe_key,
            amount_minor=amount_minor,
            currency=currency,
            notes=notes,
        )

    def failed(self, *, dedupe_key: str, reason: str, by_seller: bool = False) -> PaymentFailed:
        return PaymentFailed(
            **self._shared(), dedupe_key=dedupe_key, reason=reason, by_seller=by_seller
        )

    def reversed(
        self, *, dedupe_key: str, reason: str, settled_only: bool = False
    ) -> PaymentReversed:
        return PaymentReversed(
            **self._shared(), dedupe_key=dedupe_key, reason=reason, settled_only=settled_only
        )

    def reinstated(self, *, dedupe_key: str, reason: str) -> PaymentReinstated:
        return PaymentReinstated(**self._shared(), dedupe_key=dedupe_key, reason=reason)

    def needs_review(
        self,
        *,
        dedupe_key: str,
        reason: str,
        amount_minor: int | None = None,
        currency: str | None = None,
    ) -> PaymentNeedsReview:
        return PaymentNeedsReview(
            **self._shared(),
            dedupe_key=dedupe_key,
            reason=reason,
            amount_minor=amount_minor,
            currency=currency,
        )
