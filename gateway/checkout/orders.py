"""`GET /orders/{order_id}?token=...`: order status for the buyer, JSON or a small HTML page.

The token is a capability: a wrong or missing token gets exactly the answer a nonexistent
order gets, so order ids cannot be probed.
"""

from __future__ import annotations

import hmac
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from config.money import format_decimal
from gateway.db.models import License, Order
from gateway.http.negotiation import prefers_html
from gateway.pages.status import not_found_page, render_status_page
from gateway.state import AppState
from providers.ids import is_order_id

_NOT_FOUND = {"error": "not_found", "detail": "no such order"}
# Compared against when the order does not exist, so both paths do the same work.
_NO_TOKEN = "x" * 32


async def order_status(request: Request) -> Response:
    state: AppState = request.app.state.gateway
    html = prefers_html(request.headers.get("accept", ""))
    order_id = request.path_params["order_id"]
    # Only our id shape reaches the database: a long id (over the column), a NUL byte
    # (refused by PostgreSQL) or any junk is simply "no such order".
    order = await Order.get_or_none(id=order_id) if is_order_id(order_id) else None
    token = request.query_params.get("token", "")
    expected = order.status_token if order is not None else _NO_TOKEN
    if order is None or not hmac.compare_digest(token.encode(), expected.encode()):
        if html:
            return not_found_page(state.settings)
        return JSONResponse(_NOT_FOUND, status_code=404)
    if html:
        # The buyer's page lives in gateway/pages/status.py; this module keeps the JSON.
        cancelled = request.query_params.get("cancelled") == "1"
        return await render_status_page(order, state, cancelled=cancelled)
    doc = await order_json(order, state)
    headers = {"cache-control": "no-store"}  # the body can hold a license key
    return JSONResponse(doc, headers=headers)


async def order_json(order: Order, state: AppState) -> dict[str, Any]:
    product = state.catalog.get(order.product_id)
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
