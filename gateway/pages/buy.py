"""The buyer's chooser page behind `GET /buy/{product}` and its form post.

The page lists what the catalog and the enabled providers offer (the same document as
`/purchase-options`), asks for the buyer's email and has one submit button per provider.
Every problem with a post is answered on this page again, in words, never as JSON.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import Response

from config.money import format_decimal
from config.settings import Settings
from gateway.pages.forms import FORM_HEADERS
from gateway.pages.templating import message_page, render
from gateway.state import AppState


def price_text(amount_minor: int, currency: str) -> str:
    return f"{format_decimal(amount_minor, currency)} {currency}"


def product_not_found(settings: Settings) -> Response:
    return message_page(
        settings,
        "Product not found",
        "We do not sell a product under this address. Check the link you followed.",
        status_code=404,
        headers=FORM_HEADERS,
        link=(settings.shop.url, f"Back to {settings.shop.name}") if settings.shop.url else None,
    )


def _options(state: AppState, product_id: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(state.purchase_options[product_id])
    return doc


def provider_label(state: AppState, product_id: str, provider: str) -> str:
    """The operator's label for `provider` on this product's chooser (its name if none)."""
    options = _options(state, product_id)["options"]
    return next((o["label"] for o in options if o["provider"] == provider), provider)


def chooser(
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
    doc = _options(state, product_id)
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
