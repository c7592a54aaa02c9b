"""Lost keys: the page behind `GET/POST /licenses/recover` and the email it queues.

The buyer enters an email address; when licenses exist for it, an email listing them (each
with its order status page, where the key is shown) is queued through the outbox. The answer
is the same page whether or not the address is known, so the form cannot be used to learn
who bought; it is rate-limited per IP and per email (`recover_per_ip`, `recover_per_email`).

Outbox rows belong to an order and are unique on (order, kind). A recovery email hangs off
the buyer's newest order with the kind `recover-<10-minute window>`: repeated requests in
one window queue one email (the unique key dedupes them), and the license email's own
(order, "license") row is untouched, so it stays exactly-once.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from starlette.responses import Response
from tortoise.exceptions import IntegrityError

from config.settings import Settings
from gateway.db.models import License, LicenseStatus, Order
from gateway.mail import queue
from gateway.mail.messages import RecoveredLicense, recovery_email
from gateway.pages.forms import FORM_HEADERS
from gateway.pages.templating import render
from gateway.state import AppState

log = logging.getLogger(__name__)

RECOVER_PREFIX = "recover-"
MAX_LISTED = 50
WINDOW_MINUTES = 10


def recover_kind(now: datetime) -> str:
    """The outbox kind for a recovery email queued at `now` (one per 10-minute window)."""
    now = now.astimezone(UTC)
    window = now.replace(minute=now.minute // WINDOW_MINUTES * WINDOW_MINUTES, second=0)
    return RECOVER_PREFIX + window.strftime("%Y%m%d%H%M")


def recover_form(
    settings: Settings,
    *,
    email: str = "",
    error: str | None = None,
    done: bool = False,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
) -> Response:
    """The form, again with a problem, or (`done`) the answer that is the same for all."""
    return render(
        "recover.html",
        settings,
        status_code=status_code,
        headers={**FORM_HEADERS, **(headers or {})},
        email=email,
        error=error,
        done=done,
    )


async def queue_logged(state: AppState, email: str) -> None:
    """`queue_recovery_email` after the answer was sent: a failure is only logged."""
    try:
        await queue_recovery_email(state, email)
    except Exception:
        # The buyer already has the answer; the operator gets the cause, the buyer can retry.
        log.exception("recovery email could not be queued")


async def queue_recovery_email(state: AppState, email: str) -> bool:
    """Queue the list of `email`'s licenses; False when there are none (or one is queued)."""
    licenses = (
        await License.filter(buyer_email__iexact=email)
        .order_by("-created_at")
        .limit(MAX_LISTED)
        .prefetch_related("order")
    )
    if not licenses:
        return False
    content = recovery_email(
        shop=state.settings.shop.name,
        licenses=[_recovered(state, lic) for lic in licenses],
    )
    newest = licenses[0]
    now = datetime.now(UTC)
    try:
        await queue.enqueue(
            order_id=newest.order.id,
            kind=recover_kind(now),
            to_address=newest.buyer_email,
            content=content,
            now=now,
        )
    except IntegrityError:
        log.info("recovery email already queued in this window for order %s", newest.order.id)
        return False
    log.info("recovery email queued for order %s (%d licenses)", newest.order.id, len(licenses))
    return True


def _recovered(state: AppState, lic: License) -> RecoveredLicense:
    order: Order = lic.order
    product = state.catalog.get(lic.product_id)
    return RecoveredLicense(
        product_name=product.name if product else lic.product_id,
        bought=lic.created_at.date().isoformat(),
        active=lic.status == LicenseStatus.ACTIVE,
        status_url=order.status_url(state.settings.public_url),
    )
