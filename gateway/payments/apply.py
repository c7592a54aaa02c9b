"""The one apply path: every normalised event, from any provider, webhook or reconciler.

Each event is applied in one database transaction:

    order row (SELECT ... FOR UPDATE)  ->  state machine [transitions]  ->  on first
    settlement: license (unique per order) + outbox email (unique per order+kind)
    [gateway.licenses.issuing]  ->  inbox row (unique provider+dedupe_key) [inbox], which
    makes a redelivery roll back as a duplicate

All of it commits together or not at all. Exactly-once rests on those unique constraints,
so any number of workers and hosts sharing one PostgreSQL stay correct; `SELECT ... FOR
UPDATE` on the order row serialises concurrent events for one order on PostgreSQL (SQLite
serialises whole write transactions anyway).
"""

from __future__ import annotations

from datetime import UTC, datetime

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from config.catalog import Catalog
from gateway.db.models import Order
from gateway.licenses.issuing import issue_license
from gateway.licenses.keys import KeyFactory, generate_key
from gateway.payments import inbox
from gateway.payments.results import ApplyResult as ApplyResult
from gateway.payments.results import Result as Result
from gateway.payments.results import parked
from gateway.payments.review import resolve_review
from gateway.payments.transitions import kind_of, transition
from providers.events import ActionableEvent
from providers.ids import is_order_id


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
                if await inbox.already_received(event):
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
            result = parked(event, None, "no order matches this event")
        else:
            result = await transition(conn, order, event, now, self)
        # Written last, once, with its outcome: a duplicate first waits on the order's row
        # lock, finds nothing to change, and then loses here at the unique index, which
        # rolls back whatever it did.
        await inbox.record(conn, event, kind=kind_of(event), result=result, raw=raw, now=now)
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

    async def resolve_review(self, order_id: str, *, issue: bool, note: str = "") -> ApplyResult:
        """A human's decision on a `needs_review` order (`gateway.payments.review`)."""
        return await resolve_review(self, order_id, issue=issue, note=note)

    async def issue(self, conn: BaseDBAsyncClient, order: Order) -> bool:
        product = self.catalog.get(order.product_id)
        assert product is not None  # checked by the settlement's integrity check first
        await issue_license(
            conn,
            order,
            product,
            new_key=self.new_key,
            status_url=order.status_url(self.public_url),
            help_url=self.help_url,
        )
        return True
