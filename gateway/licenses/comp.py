"""Licenses given away without payment ("comp"): a settled, zero-amount order of provider
`comp` that records who gave it and why, and a license issued exactly like a paid one (its
key emailed and shown on the order's status page).

Idempotent: the same product, buyer and reason name one comp, whoever asks and however often.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from config.catalog import Product
from gateway.db.models import License, Order, OrderStatus, new_order_id, new_status_token
from gateway.licenses.issuing import issue_license
from gateway.licenses.keys import KeyFactory, generate_key, mask_key
from gateway.ops import metrics

log = logging.getLogger(__name__)

COMP_PROVIDER = "comp"


@dataclass(frozen=True, slots=True)
class Comp:
    license: License
    order: Order
    # False: this comp had been issued before, and nothing new was.
    created: bool


def comp_idempotency_key(product: Product, address: str, reason: str) -> str:
    fingerprint = hashlib.sha256(f"{product.id}\0{address.lower()}\0{reason}".encode()).hexdigest()
    return f"comp:{fingerprint[:40]}"


async def _issued(idempotency_key: str) -> Comp | None:
    lic = await License.get_or_none(order__idempotency_key=idempotency_key).prefetch_related(
        "order"
    )
    return None if lic is None else Comp(lic, lic.order, created=False)


async def issue_comp(
    product: Product,
    address: str,
    *,
    by: str,
    reason: str,
    public_url: str,
    help_url: str | None,
    new_key: KeyFactory = generate_key,
) -> Comp:
    """Give `product` to the (normalised) email `address`, on behalf of `by`, for `reason`."""
    idempotency_key = comp_idempotency_key(product, address, reason)
    existing = await _issued(idempotency_key)
    if existing is not None:
        return existing
    try:
        async with in_transaction() as conn:
            order = await Order.create(
                using_db=conn,
                id=new_order_id(),
                product_id=product.id,
                amount_minor=0,
                currency=product.currency,
                provider=COMP_PROVIDER,
                buyer_email=address,
                status=OrderStatus.SETTLED,
                status_token=new_status_token(),
                idempotency_key=idempotency_key,
                notes=f"comp by {by}: {reason}",
                settled_at=datetime.now(UTC),
            )
            lic = await issue_license(
                conn,
                order,
                product,
                new_key=new_key,
                status_url=order.status_url(public_url),
                help_url=help_url,
            )
    except IntegrityError:
        # The same comp issued concurrently by another run: report that one.
        raced = await _issued(idempotency_key)
        assert raced is not None
        return raced
    metrics.LICENSES_ISSUED.labels("comp").inc()
    log.info(
        "comp license %s issued to %s by %s: %s",
        mask_key(lic.key),
        address,
        by,
        reason,
        extra={"order_id": order.id, "provider": COMP_PROVIDER},
    )
    return Comp(lic, order, created=True)
