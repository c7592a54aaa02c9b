"""The buyer's emails, plain text and HTML: the license email (built once when the license
is issued) and the lost-key recovery list."""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

from config.catalog import Product

# `OutboxEmail.subject` is a 255-character column. The catalog keeps names well under it;
# clipping here as well means no rendering of any name can fail the settle transaction
# that writes this row with the license.
SUBJECT_MAX = 255


def subject_line(name: str) -> str:
    """The subject "Your <name> license key", the name cut short with "…" to fit."""
    subject = f"Your {name} license key"
    if len(subject) <= SUBJECT_MAX:
        return subject
    room = SUBJECT_MAX - len("Your … license key")
    return f"Your {name[:room]}… license key"


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
    # Line breaks would be refused as a header at send time, long after the settlement.
    subject = subject_line(" ".join(product.name.split()))
    return EmailContent(subject=subject, text=text, html=html)


@dataclass(frozen=True, slots=True)
class RecoveredLicense:
    """One line of a recovery email: a license and the order page that shows its key."""

    product_name: str
    bought: str  # ISO date
    active: bool
    status_url: str


_RECOVERY_OUTRO = (
    "Each link opens the order page that shows the license key. If you did not ask "
    "for this email, you can ignore it."
)


def recovery_email(*, shop: str, licenses: list[RecoveredLicense]) -> EmailContent:
    intro = f"Someone (hopefully you) asked {shop} to send the licenses bought with this address."
    lines: list[str] = []
    items: list[str] = []
    for lic in licenses:
        state_word = "active" if lic.active else "revoked"
        lines.append(f"- {lic.product_name} (bought {lic.bought}, {state_word}): {lic.status_url}")
        items.append(
            f"<li>{escape(lic.product_name)} (bought {escape(lic.bought)}, {state_word}): "
            f'<a href="{escape(lic.status_url, quote=True)}">order page with your key</a></li>'
        )
    text = f"{intro}\n\n" + "\n".join(lines) + f"\n\n{_RECOVERY_OUTRO}\n"
    html = f"<p>{escape(intro)}</p><ul>{''.join(items)}</ul><p>{_RECOVERY_OUTRO}</p>"
    return EmailContent(subject=f"Your licenses from {shop}"[:SUBJECT_MAX], text=text, html=html)
