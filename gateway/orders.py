"""`GET /orders/{order_id}?token=...`: order status for the buyer, JSON or a small HTML page.

The token is a capability: a wrong or missing token gets exactly the answer a nonexistent
order gets, so order ids cannot be probed.
"""

from __future__ import annotations

import hmac
from html import escape
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response

from config.money import format_decimal
from gateway.models import License, Order, OrderStatus
from gateway.state import AppState
from providers.ids import is_order_id

_NOT_FOUND = {"error": "not_found", "detail": "no such order"}
# Compared against when the order does not exist, so both paths do the same work.
_NO_TOKEN = "x" * 32
_WAITING = {OrderStatus.CREATED, OrderStatus.PENDING}
REFRESH_SECONDS = 5


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
            return HTMLResponse(_page("Order not found", _NOT_FOUND_HTML), status_code=404)
        return JSONResponse(_NOT_FOUND, status_code=404)
    doc = await order_json(order, state)
    headers = {"cache-control": "no-store"}  # the body can hold a license key
    if html:
        return HTMLResponse(render_html(doc), headers=headers)
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


def prefers_html(accept: str) -> bool:
    """True when the client ranks text/html above JSON (a browser back from checkout)."""
    best: dict[str, float] = {}
    for part in accept.split(","):
        media, *params = (p.strip() for p in part.split(";"))
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        best[media.lower()] = max(q, best.get(media.lower(), 0.0))
    html = best.get("text/html", 0.0)
    return html > 0 and html >= best.get("application/json", 0.0)


_STYLE = (
    "body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;background:#f5f6f8;"
    "color:#1d2330;margin:0;padding:2rem 1rem}"
    "main{max-width:32rem;margin:0 auto;background:#fff;border-radius:12px;"
    "padding:1.5rem 2rem;box-shadow:0 1px 4px rgba(0,0,0,.08)}"
    "h1{font-size:1.3rem;margin-top:0}dl{display:grid;grid-template-columns:auto 1fr;"
    "gap:.4rem 1rem}dt{color:#667}dd{margin:0}"
    ".key{font:600 1.25rem ui-monospace,Menlo,Consolas,monospace;letter-spacing:.05em;"
    "background:#eef2ff;padding:.6rem .8rem;border-radius:8px;display:inline-block}"
    ".status{font-weight:600}.revoked{color:#b42318}.ok{color:#067647}.wait{color:#b54708}"
)
_NOT_FOUND_HTML = "<h1>Order not found</h1><p>Check the link from your confirmation.</p>"
_HEADLINES = {
    "created": ("Waiting for your payment", "wait"),
    "pending": ("Payment received, waiting for confirmation", "wait"),
    "settled": ("Paid, thank you", "ok"),
    "failed": ("Payment failed or expired", "revoked"),
    "reversed": ("Payment refunded or reversed", "revoked"),
}


def _page(title: str, body: str, *, refresh: bool = False) -> str:
    meta = f'<meta http-equiv="refresh" content="{REFRESH_SECONDS}">' if refresh else ""
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"{meta}<title>{escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body><main>{body}</main></body></html>"
    )


def render_html(doc: dict[str, Any]) -> str:
    status = str(doc["status"])
    headline, css = _HEADLINES.get(status, (status, "wait"))
    rows = [
        ("Order", doc["order_id"]),
        ("Product", doc["product"]["name"]),
        ("Amount", f"{doc['amount']} {doc['currency']}"),
        ("Paid with", doc["provider"]),
        ("Status", status),
    ]
    body = [f'<h1 class="{css}">{escape(headline)}</h1><dl>']
    body += [f"<dt>{escape(k)}</dt><dd>{escape(str(v))}</dd>" for k, v in rows]
    body.append("</dl>")
    lic = doc["license"]
    if lic is not None:
        revoked = lic["status"] != "active"
        body.append("<h2>Your license</h2>")
        body.append(f'<p><span class="key">{escape(lic["key"])}</span></p><dl>')
        lic_rows = [
            ("Tier", lic["tier"]),
            ("Add-ons", ", ".join(lic["addons"]) or "none"),
            ("Seats", lic["seat_limit"]),
        ]
        body += [f"<dt>{escape(k)}</dt><dd>{escape(str(v))}</dd>" for k, v in lic_rows]
        klass = "revoked" if revoked else "ok"
        body.append(f'<dt>License</dt><dd class="status {klass}">{escape(lic["status"])}</dd></dl>')
        if not revoked:
            body.append("<p>The key was also sent to your email address.</p>")
    elif status in {s.value for s in _WAITING}:
        body.append(f"<p>This page refreshes every {REFRESH_SECONDS} seconds.</p>")
    return _page(f"Order {doc['order_id']}", "".join(body), refresh=OrderStatus(status) in _WAITING)
