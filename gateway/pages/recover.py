"""Lost keys: `GET/POST /licenses/recover`.

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
from html import escape

from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response
from tortoise.exceptions import IntegrityError

from gateway.db.models import EmailStatus, License, Order, OutboxEmail
from gateway.http.errors import TooManyRequests
from gateway.http.limits import client_ip
from gateway.http.origins import form_origin_allowed
from gateway.mail.addresses import MAX_EMAIL_CHARS
from gateway.pages.buy import FORM_HEADERS, parse_email
from gateway.pages.templating import message_page, render
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


async def recover_page(request: Request) -> Response:
    state: AppState = request.app.state.gateway
    return render("recover.html", state.settings, headers=FORM_HEADERS, email="", done=False)


async def recover_submit(request: Request) -> Response:
    state: AppState = request.app.state.gateway
    settings = state.settings
    if not form_origin_allowed(request, settings):
        return message_page(
            settings,
            "Please use the form on this site",
            "This request was sent from another website, so we did not accept it.",
            status_code=403,
            headers=FORM_HEADERS,
            link=("/licenses/recover", "Open the form"),
        )
    # Read (and so size-check: 413 past the cap) whatever was sent, form or not, before
    # parsing; `form()` then parses the cached bytes.
    await request.body()
    form = await request.form()
    raw = form.get("email")
    shown = raw[:MAX_EMAIL_CHARS] if isinstance(raw, str) else ""
    email, problem = parse_email(raw)
    if email is None:
        return render(
            "recover.html",
            settings,
            status_code=422,
            headers=FORM_HEADERS,
            email=shown,
            error=problem,
            done=False,
        )
    try:
        await state.limiter.check("recover_per_ip", client_ip(request))
        await state.limiter.check("recover_per_email", email.lower())
    except TooManyRequests as exc:
        return render(
            "recover.html",
            settings,
            status_code=429,
            headers={**FORM_HEADERS, **exc.headers},
            email=shown,
            error="Too many requests for this form. Please wait "
            f"{exc.extra['retry_after']} seconds and try again.",
            done=False,
        )
    # Identical for known and unknown addresses (no enumeration); the look-up and the outbox
    # write run after the answer is sent, so its timing does not tell them apart either.
    response = render("recover.html", settings, headers=FORM_HEADERS, email=email, done=True)
    response.background = BackgroundTask(_queue_logged, state, email)
    return response


async def _queue_logged(state: AppState, email: str) -> None:
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
    base = state.settings.public_url
    shop = state.settings.shop.name
    lines: list[str] = []
    items: list[str] = []
    for lic in licenses:
        order: Order = lic.order
        product = state.catalog.get(lic.product_id)
        name = product.name if product else lic.product_id
        url = order.status_url(base)
        state_word = "active" if lic.status.value == "active" else "revoked"
        bought = lic.created_at.date().isoformat()
        lines.append(f"- {name} (bought {bought}, {state_word}): {url}")
        items.append(
            f"<li>{escape(name)} (bought {escape(bought)}, {state_word}): "
            f'<a href="{escape(url, quote=True)}">order page with your key</a></li>'
        )
    intro = f"Someone (hopefully you) asked {shop} to send the licenses bought with this address."
    text = (
        f"{intro}\n\n"
        + "\n".join(lines)
        + "\n\nEach link opens the order page that shows the license key. If you did not ask "
        "for this email, you can ignore it.\n"
    )
    html = (
        f"<p>{escape(intro)}</p><ul>{''.join(items)}</ul>"
        "<p>Each link opens the order page that shows the license key. If you did not ask "
        "for this email, you can ignore it.</p>"
    )
    now = datetime.now(UTC)
    try:
        await OutboxEmail.create(
            order_id=licenses[0].order.id,
            kind=recover_kind(now),
            to_address=licenses[0].buyer_email,
            subject=f"Your licenses from {shop}"[:255],
            body_text=text,
            body_html=html,
            status=EmailStatus.PENDING,
            next_attempt_at=now,
        )
    except IntegrityError:
        log.info("recovery email already queued in this window for order %s", licenses[0].order.id)
        return False
    log.info("recovery email queued for order %s (%d licenses)", licenses[0].order.id, len(lines))
    return True
