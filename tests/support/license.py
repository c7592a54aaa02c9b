"""Shared helpers for the license API tests: a settled order with its license."""

from __future__ import annotations

from config.catalog import Catalog
from gateway.db.models import License, OrderStatus
from gateway.licenses.keys import generate_key
from tests.support.issuer import BUYER, new_order


async def new_license(catalog: Catalog, *, product: str = "pro") -> License:
    """A license as a settlement leaves it (entitlements from the catalog), committed."""
    item = catalog.get(product)
    assert item is not None
    order = await new_order(catalog, product=product, status=OrderStatus.SETTLED)
    return await License.create(
        key=generate_key(),
        order_id=order.id,
        product_id=item.id,
        tier=item.tier,
        addons=list(item.addons),
        seat_limit=item.seats,
        buyer_email=BUYER,
    )
