"""The license email: plain text and HTML, built once when the license is issued."""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

from config.catalog import Product


@dataclass(frozen=True, slots=True)
class EmailContent:
    subject: str
    text: str
    html: str


def license_email(
    *, product: Product, key: str, order_id: str, status_url: str, help_url: str | None
) -> EmailContent:
    addons = ", ".join(product.addons) or "none"
    activate = (
        "Open the app, choose Activate license, and paste the key above. "
        f"It can be active on up to {product.seats} machine(s) at once."
    )
    if help_url:
        activate += f" More help: {help_url}"
    text = (
        f"Thank you for buying {product.name}.\n\n"
        f"License key: {key}\n"
        f"Tier: {product.tier}\n"
        f"Add-ons: {addons}\n\n"
        f"How to activate: {activate}\n\n"
        f"Order: {order_id}\n"
        f"Order status: {status_url}\n"
    )
    html = (
        f"<p>Thank you for buying <strong>{escape(product.name)}</strong>.</p>"
        f'<p>License key: <code style="font-size:1.2em">{escape(key)}</code></p>'
        f"<ul><li>Tier: {escape(product.tier)}</li><li>Add-ons: {escape(addons)}</li></ul>"
        f"<p>How to activate: {escape(activate)}</p>"
        f"<p>Order: {escape(order_id)} — "
        f'<a href="{escape(status_url, quote=True)}">order status</a></p>'
    )
    return EmailContent(subject=f"Your {product.name} license key", text=text, html=html)
