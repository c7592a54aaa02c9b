"""The purchase-options document: what each product can be bought with.

Rendered once at startup (the catalog and the enabled providers do not change while the
app runs) and served as bytes by `GET /purchase-options/{product}`; the buy page renders
its chooser from the same document.
"""

from __future__ import annotations

import json
from typing import Any

from config.catalog import Catalog, Product
from config.settings import Settings
from providers.base import PaymentProvider
from providers.events import ProviderName


def _product_json(product: Product) -> dict[str, Any]:
    return {
        "id": product.id,
        "name": product.name,
        "description": product.description,
        "price": product.price,
        "currency": product.currency,
        "amount_minor": product.amount_minor,
        "tier": product.tier,
        "addons": list(product.addons),
        "seats": product.seats,
    }


def render_purchase_options(
    settings: Settings, catalog: Catalog, providers: dict[ProviderName, PaymentProvider]
) -> dict[str, bytes]:
    """Every product's purchase-options body, rendered once at startup."""
    sections = {ProviderName.BTCPAY: settings.btcpay, ProviderName.STRIPE: settings.stripe}
    bodies: dict[str, bytes] = {}
    for product in catalog:
        options = [
            {
                "provider": name.value,
                "label": sections[name].label,
                "fee_hint": sections[name].fee_hint,
                "speed_hint": sections[name].speed_hint,
                "checkout_url": f"{settings.public_url}/checkout/{name.value}/{product.id}",
                "method": "POST",
            }
            # Injected providers arrive in any order; the operator's `order` decides.
            for name in sorted(providers, key=lambda n: (sections[n].order, n.value))
        ]
        doc: dict[str, Any] = {"product": _product_json(product), "options": options}
        if not options:
            doc["detail"] = "no payment provider is enabled"
        bodies[product.id] = json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()
    return bodies
