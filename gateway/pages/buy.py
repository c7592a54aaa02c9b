"""The buyer's chooser: `GET /buy/{product}` and its form post `POST /buy/{product}`.

The page lists what the catalog and the enabled providers offer (the same document as
`/purchase-options`), asks for the buyer's email and has one submit button per provider.
The post creates the order and the provider checkout (the same path as the JSON checkout)
and redirects the browser to the provider's hosted page; every problem is answered on the
page in words, never as JSON.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from config.money import format_decimal
from gateway.checkout.service import _checkout_once, _order_for
from gateway.http.errors import ServiceUnavailable, TooManyRequests
from gateway.http.limits import client_ip
from gateway.http.origins import form_origin_allowed
from gateway.mail.addresses import MAX_EMAIL_CHARS, InvalidEmail, Problem, normalize_email
from gateway.pages.templating import message_page, render
from gateway.state import AppState

log = logging.getLogger(__name__)

_EMAIL_WORDS = {
    Problem.MISSING: "Please enter your email address: we send your license key to it.",
    Problem.TOO_LONG: "That email address is too long.",
    Problem.MALFORMED: "That email address does not look right: {}",
}
# No token in these URLs; `same-origin` keeps the Origin header on our own form posts
# (under `no-referrer` Chrome sends `Origin: null`).
FORM_HEADERS = {"referrer-policy": "same-origin", "cache-control": "no-store"}


def price_text(amount_minor: int, currency: str) -> str:
    return f"{format_decimal(amount_minor, currency)} {currency}"


def parse_email(raw: object) -> tuple[str | None, str | None]:
    """(normalised email, None) or (None, a sentence for the buyer)."""
    try:
        return normalize_email(raw), None
    except InvalidEmail as exc:
        return None, _EMAIL_WORDS[exc.problem].format(exc)


def _not_found(state: AppState) -> Response:
    return message_page(
        state.settings,
        "Product not found",
        "We do not sell a product under this address. Check the link you followed.",
        status_code=404,
        headers=FORM_HEADERS,
        link=(state.settings.shop.url, f"Back to {state.settings.shop.name}")
        if state.settings.shop.url
        else None,
    )


def _chooser(
    state: AppState,
    product_id: str,
    *,
    email: str = "",
    error: str | None = None,
    error_field: str | None = None,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
    preferred: str | None = None,
) -> Response:
    doc: dict[str, Any] = json.loads(state.purchase_options[product_id])
    product = doc["product"]
    if preferred:
        # The embed's button for one provider opens the chooser with that provider first.
        doc["options"].sort(key=lambda option: option["provider"] != preferred)
    return render(
        "buy.html",
        state.settings,
        status_code=status_code,
        headers={**FORM_HEADERS, **(headers or {})},
        product=product,
        price=price_text(product["amount_minor"], product["currency"]),
        options=doc["options"],
        email=email,
        error=error,
        error_field=error_field,
    )


async def buy_page(request: Request) -> Response:
    state: AppState = request.app.state.gateway
    product_id = request.path_params["product"]
    if product_id not in state.purchase_options:
        return _not_found(state)
    return _chooser(state, product_id, preferred=request.query_params.get("provider"))


async def buy_submit(request: Request) -> Response:
    state: AppState = request.app.state.gateway
    product_id = request.path_params["product"]
    product = state.catalog.get(product_id)
    if product is None or product_id not in state.purchase_options:
        return _not_found(state)
    if not form_origin_allowed(request, state.settings):
        return message_page(
            state.settings,
            "Please order from the shop's page",
            "This order form was sent from another website, so we did not accept it.",
            status_code=403,
            headers=FORM_HEADERS,
            link=(f"/buy/{product.id}", f"Buy {product.name}"),
        )
    # Read (and so size-check: 413 past the cap) whatever was sent, form or not, before
    # parsing; `form()` then parses the cached bytes.
    await request.body()
    form = await request.form()
    raw_email, choice = form.get("email"), form.get("provider")
    shown_email = raw_email[:MAX_EMAIL_CHARS] if isinstance(raw_email, str) else ""
    email, problem = parse_email(raw_email)
    if email is None:
        return _chooser(
            state,
            product_id,
            email=shown_email,
            error=problem,
            error_field="email",
            status_code=422,
        )
    provider = state.provider(choice) if isinstance(choice, str) else None
    if provider is None:
        return _chooser(
            state,
            product_id,
            email=shown_email,
            error="Please choose one of the ways to pay below.",
            status_code=422,
        )
    try:
        await state.limiter.check("checkout_per_ip", client_ip(request))
        await state.limiter.check("checkout_per_email", email.lower())
    except TooManyRequests as exc:
        return _chooser(
            state,
            product_id,
            email=shown_email,
            error="Too many orders were started from here in a short time. "
            f"Please wait {exc.extra['retry_after']} seconds and try again.",
            status_code=429,
            headers=exc.headers,
        )
    order, created = await _order_for(provider.name, product, email, None)
    if order.checkout_url is None:
        try:
            order = await _checkout_once(state, provider, product, order, claimed=created)
        except ServiceUnavailable:
            label = next(
                (
                    o["label"]
                    for o in json.loads(state.purchase_options[product_id])["options"]
                    if o["provider"] == provider.name.value
                ),
                provider.name.value,
            )
            return _chooser(
                state,
                product_id,
                email=shown_email,
                error=f"“{label}” is not reachable right now. Nothing was charged. "
                "Please try again in a few minutes or choose another way to pay.",
                status_code=503,
            )
    assert order.checkout_url is not None
    return RedirectResponse(order.checkout_url, status_code=303)
