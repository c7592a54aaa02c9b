"""License keys (`XXXX-XXXX-XXXX-XXXX`, no look-alikes) and issuing a license for an order."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from datetime import UTC, datetime

from tortoise.backends.base.client import BaseDBAsyncClient

from config.catalog import Product
from gateway.db.models import EmailStatus, License, Order, OutboxEmail
from gateway.mail.messages import license_email

log = logging.getLogger(__name__)

# No 0/O, 1/I/L: a buyer reads the key off an email and types it.
ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
GROUPS = 4
GROUP_LEN = 4

# The applier takes one of these so a test can force a key clash.
KeyFactory = Callable[[], str]
LICENSE_EMAIL = "license"


def generate_key() -> str:
    """A fresh random key (~79 bits); uniqueness is enforced by the database."""
    return "-".join(
        "".join(secrets.choice(ALPHABET) for _ in range(GROUP_LEN)) for _ in range(GROUPS)
    )


def normalize_key(raw: str) -> str:
    """Canonical form of a key a human typed (case, spaces, missing dashes)."""
    compact = "".join(ch for ch in raw.upper() if ch.isalnum())
    return "-".join(compact[i : i + GROUP_LEN] for i in range(0, len(compact), GROUP_LEN))


def mask_key(key: str) -> str:
    """For logs: never write a whole key."""
    return key[:4] + "-****-****-" + key[-4:] if len(key) >= 8 else "****"


async def issue_license(
    conn: BaseDBAsyncClient,
    order: Order,
    product: Product,
    *,
    new_key: KeyFactory,
    status_url: str,
    help_url: str | None,
) -> License:
    """The license (entitlements from the catalog) and its email, in the caller's transaction.

    Both rows commit with the order's settlement or not at all; `License.order` and
    `OutboxEmail(order, kind)` are unique, so a second issue for one order cannot commit.
    """
    # No look-up first: a clash (~2^-79) fails the unique index, and the apply path re-runs
    # the event with a fresh key. Saves a query on every settlement.
    key = new_key()
    lic = await License.create(
        using_db=conn,
        key=key,
        order_id=order.id,
        product_id=product.id,
        tier=product.tier,
        addons=list(product.addons),
        seat_limit=product.seats,
        buyer_email=order.buyer_email,
    )
    content = license_email(
        product=product, key=key, order_id=order.id, status_url=status_url, help_url=help_url
    )
    await OutboxEmail.create(
        using_db=conn,
        order_id=order.id,
        kind=LICENSE_EMAIL,
        to_address=order.buyer_email,
        subject=content.subject,
        body_text=content.text,
        body_html=content.html,
        status=EmailStatus.PENDING,
        next_attempt_at=datetime.now(UTC),
    )
    log.info("license %s issued for order %s", mask_key(key), order.id)
    return lic
