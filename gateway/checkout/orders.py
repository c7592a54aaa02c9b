"""The order status the buyer polls: an order found by its capability token, as JSON.

The token is a capability: a wrong or missing token finds exactly what a nonexistent order
finds (nothing), so order ids cannot be probed.
"""

from __future__ import annotations

import hmac
from typing import Any

from config.catalog import Catalog
from config.money import format_decimal
from gateway.db.models import License, Order
from providers.ids import is_order_id

# Compared against when the order does not exist, so both paths do the same work.
_NO_TOKEN = "x" * 32


async def find_order(order_id: str, token: str) -> Order | None:
    """The order if `token` is its status token, else None (also for no such order)."""
    # Only our id shape reaches the database: a long id (over the column), a NUL byte
    # (refused by PostgreSQL) or any junk is simply "no such order".
    order = await Order.get_or_none(id=order_id) if is_order_id(order_id) else None
    expected = order.status_token if order is not None else _NO_TOKEN
    if order is None or not hmac.compare_digest(token.encode(), expected.encode()):
        return None
    return order


async def order_json(order: Order, catalog: Catalog) -> dict[str, Any]:
    """The order's status document, with its license (key included) once issued."""
    product = catalog.get(order.product_id)
    doc: dict[str, Any] = {
        "order_id": order.id,
        "status": order.status.value,
        "product": {"id": order.product_id, "name": product.name if product else order.product_id},
        "provider": order.provider,
        "amount": format_decimal(order.amount_minor, order.currency),
        "currency": order.currency,
        "created_at": order.created_at.isoformat(),
        "license": None,
    }
    lic = await License.get_or_none(order_id=order.id)
    if lic is not None:
        doc["license"] = {
            "key": lic.key,
            "tier": lic.tier,
            "addons": list(lic.addons),
            "seat_limit": lic.seat_limit,
            "status": lic.status.value,
        }
    return doc
