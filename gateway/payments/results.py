"""What applying one event did: the outcome the inbox records and the webhook answers."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import StrEnum

from gateway.db.models import Order
from providers.events import ActionableEvent

# The apply path's logger, whichever module of it speaks: operators filter on it.
log = logging.getLogger("gateway.payments.apply")


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
    # A reversal took back a settled order's payment, so its license was revoked.
    license_revoked: bool = False


def parked(event: ActionableEvent, order: Order | None, reason: str) -> ApplyResult:
    """The event is recorded for a human (review list) and the order left as it was."""
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
