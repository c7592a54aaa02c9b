"""The checkout domain's routes: purchase options, checkout, and the order status.

Each handler reads the request, calls the service and answers; the work lives in
`options`, `service` (with `claim`) and `orders`. The checkout takes `application/json` or
a form and nothing else (415): a browser sends JSON cross-site only after a CORS preflight,
and every kind of body is checked for its origin first (`gateway/http/origins.py`).
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from gateway.checkout.orders import find_order, order_json
from gateway.checkout.service import start_checkout
from gateway.http import json_body as json_text
from gateway.http.errors import InvalidRequest, NotFound, UnsupportedMediaType
from gateway.http.limits import client_ip
from gateway.http.negotiation import prefers_html
from gateway.http.origins import check_origin
from gateway.mail.addresses import InvalidEmail, Problem, normalize_email
from gateway.pages.status import not_found_page, render_status_page
from gateway.state import AppState

_JSON_HEADERS = {"content-type": "application/json"}
_NO_PRODUCT = json.dumps(
    {"error": "unknown_product", "detail": "no such product"}, separators=(",", ":")
).encode()
_NO_ORDER = {"error": "not_found", "detail": "no such order"}
_JSON_TYPE = "application/json"
_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


async def purchase_options(request: Request) -> Response:
    state: AppState = request.app.state.gateway
    body = state.purchase_options.get(request.path_params["product"])
    if body is None:
        return Response(_NO_PRODUCT, status_code=404, headers=_JSON_HEADERS)
    return Response(body, headers=_JSON_HEADERS)


async def checkout(request: Request) -> Response:
    state: AppState = request.app.state.gateway
    check_origin(request, state.settings)
    await state.limiter.check("checkout_per_ip", client_ip(request))
    media = _media_type(request)
    provider_name = request.path_params["provider"]
    provider = state.provider(provider_name)
    if provider is None:
        raise NotFound(
            f"payment provider {provider_name!r} is not enabled", code="unknown_provider"
        )
    product = state.catalog.get(request.path_params["product"])
    if product is None:
        raise NotFound("no such product", code="unknown_product")
    email = await _read_email(request, media)
    await state.limiter.check("checkout_per_email", email)
    started = await start_checkout(
        provider,
        product,
        email,
        public_url=state.settings.public_url,
        idempotency_key=_idempotency_key(request),
    )
    if media in _FORM_TYPES:
        return RedirectResponse(started.checkout_url, status_code=303)
    order = started.order
    if not started.created:
        # A replay proves nothing about who sent the first request (anyone who learns a key,
        # an email and a product can repeat them), so it never gets the status token: the
        # buyer who paid reaches the status page from the provider's redirect and the email.
        return JSONResponse(
            {
                "order_id": order.id,
                "checkout_url": started.checkout_url,
                "status_url": None,
                "replayed": True,
            }
        )
    status_url = order.status_url(state.settings.public_url)
    return JSONResponse(
        {"order_id": order.id, "checkout_url": started.checkout_url, "status_url": status_url},
        status_code=201,
    )


async def order_status(request: Request) -> Response:
    state: AppState = request.app.state.gateway
    html = prefers_html(request.headers.get("accept", ""))
    order = await find_order(request.path_params["order_id"], request.query_params.get("token", ""))
    if order is None:
        if html:
            return not_found_page(state.settings)
        return JSONResponse(_NO_ORDER, status_code=404)
    if html:
        cancelled = request.query_params.get("cancelled") == "1"
        return await render_status_page(order, state, cancelled=cancelled)
    doc = await order_json(order, state.catalog)
    headers = {"cache-control": "no-store"}  # the body can hold a license key
    return JSONResponse(doc, headers=headers)


def _media_type(request: Request) -> str:
    """The body's media type, JSON or a form; anything else is refused with 415."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != _JSON_TYPE and media not in _FORM_TYPES:
        # No Content-Type and text/plain are what a cross-site page can send unasked.
        raise UnsupportedMediaType(
            "send the order as application/json, or as a form "
            "(application/x-www-form-urlencoded, multipart/form-data)"
        )
    return media


async def _read_email(request: Request, media: str) -> str:
    raw: Any
    if media in _FORM_TYPES:
        form = await request.form()
        raw = form.get("email")
    else:
        try:
            data = json_text.loads(await request.body() or b"null")
        except ValueError as exc:
            raise InvalidRequest("body must be JSON or a form", field="body") from exc
        raw = data.get("email") if isinstance(data, dict) else None
    try:
        return normalize_email(raw)
    except InvalidEmail as exc:
        if exc.problem is Problem.MISSING:
            raise InvalidRequest("email: a buyer email address is required", field="email") from exc
        raise InvalidRequest(f"email: {exc}", field="email") from exc


def _idempotency_key(request: Request) -> str | None:
    key = request.headers.get("idempotency-key")
    if key is not None and not (0 < len(key) <= 255):
        raise InvalidRequest("Idempotency-Key must be 1-255 characters", field="Idempotency-Key")
    return key


ROUTES: list[BaseRoute] = [
    Route("/purchase-options/{product}", purchase_options, methods=["GET"]),
    Route("/checkout/{provider}/{product}", checkout, methods=["POST"]),
    Route("/orders/{order_id}", order_status, methods=["GET"]),
]
