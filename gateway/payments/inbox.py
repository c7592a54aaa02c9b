"""The inbox: one row per verified event, unique on (provider, dedupe_key), with its outcome.

Written last in the event's transaction, so a redelivery (or a concurrent delivery) of the
same fact loses at the unique index and rolls back whatever it did. Parked rows are the
event half of the review list.
"""

from __future__ import annotations

from datetime import datetime

from tortoise.backends.base.client import BaseDBAsyncClient

from gateway.db.models import InboxEvent, InboxOutcome
from gateway.payments.results import ApplyResult
from providers.events import ActionableEvent


def _storable_id(order_id: str | None) -> str | None:
    """A foreign order id as the operator's clue, if it fits the column (and has no NUL)."""
    if order_id is None or len(order_id) > 40 or "\x00" in order_id:
        return None
    return order_id


async def record(
    conn: BaseDBAsyncClient,
    event: ActionableEvent,
    *,
    kind: str,
    result: ApplyResult,
    raw: bytes,
    now: datetime,
) -> None:
    """The event's inbox row, with its outcome: one statement, not an insert plus an update."""
    await InboxEvent.create(
        using_db=conn,
        provider=event.provider.value,
        dedupe_key=event.dedupe_key,
        kind=kind,
        order_id=result.order_id or _storable_id(event.order_id),
        provider_ref=event.provider_ref,
        payload=raw.decode("utf-8", errors="replace"),
        outcome=InboxOutcome(result.result),
        detail=result.detail,
        handled_at=now,
    )


async def already_received(event: ActionableEvent) -> bool:
    return await InboxEvent.exists(provider=event.provider.value, dedupe_key=event.dedupe_key)


async def release_parked(conn: BaseDBAsyncClient, order_id: str, now: datetime) -> None:
    """The order was decided (by a human or the provider): its parked events leave the
    review list."""
    await (
        InboxEvent.filter(order_id=order_id, outcome=InboxOutcome.PARKED)
        .using_db(conn)
        .update(outcome=InboxOutcome.NOOP, handled_at=now)
    )
