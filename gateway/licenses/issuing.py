"""Issuing a license for an order: the license row and its email, in the settle transaction."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from tortoise.backends.base.client import BaseDBAsyncClient

from config.catalog import Product
from gateway.db.models import License, Order
from gateway.licenses.keys import KeyFactory, mask_key
from gateway.mail import queue
from gateway.mail.messages import license_email

log = logging.getLogger(__name__)

# The outbox kind of the email that carries the key.
LICENSE_EMAIL = "license"


async def issue_license(
    conn: BaseDBAsyncClient,
    order: Order,
    product: Product,
    *,
    new_key: KeyFactory,
    status_url: str,
    help_url: str | None,
) -> License:
    """The license (entitlements from the catalog) and its email, in the caller's transaction.

    Both rows commit with the order's settlement or not at all; `License.order` and
    `OutboxEmail(order, kind)` are unique, so a second issue for one order cannot commit.
    """
    # No look-up first: a clash (~2^-79) fails the unique index, and the apply path re-runs
    # the event with a fresh key. Saves a query on every settlement.
    key = new_key()
    lic = await License.create(
        using_db=conn,
        key=key,
        order_id=order.id,
        product_id=product.id,
        tier=product.tier,
        addons=list(product.addons),
        seat_limit=product.seats,
        buyer_email=order.buyer_email,
    )
    content = license_email(
        product=product, key=key, order_id=order.id, status_url=status_url, help_url=help_url
    )
    await queue.enqueue(
        using_db=conn,
        order_id=order.id,
        kind=LICENSE_EMAIL,
        to_address=order.buyer_email,
        content=content,
        now=datetime.now(UTC),
    )
    log.info("license %s issued for order %s", mask_key(key), order.id)
    return lic
