"""The buyer's thank-you / order status page (the HTML side of `GET /orders/{id}?token=`).

It says in the buyer's words where the order stands, shows the key with a copy button and
the seller's activation instructions once paid, and offers a way forward from every
dead end (cancelled, expired, failed). `static/status.js` polls the order's JSON and swaps
in a fresh rendering when it changes, until a final state.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from starlette.responses import HTMLResponse

from config.settings import Settings
from gateway.db.models import EmailStatus, License, LicenseStatus, Order, OrderStatus, OutboxEmail
from gateway.licenses.issuing import LICENSE_EMAIL
from gateway.pages.buy import price_text
from gateway.pages.templating import message_page, render
from gateway.state import AppState

# Minutes until BTCPay settles a seen payment, per speed policy: the confirmations it waits
# for (HighSpeed 0, MediumSpeed 1, LowMediumSpeed 2, LowSpeed 6) times ~10 min per block.
CONFIRM_MINUTES = {"HighSpeed": 1, "MediumSpeed": 10, "LowMediumSpeed": 20, "LowSpeed": 60}
METHOD_WORDS = {"stripe": "Card", "btcpay": "Bitcoin"}
PAID_WORDS = {"stripe": "Paid by card", "btcpay": "Paid in bitcoin"}
NO_STORE = {"cache-control": "no-store"}  # the page can hold a license key


@dataclass(slots=True)
class Link:
    href: str
    text: str


@dataclass(slots=True)
class View:
    heading: str
    tone: str  # ok | wait | bad: colour only, the words carry the meaning
    poll: bool
    paragraphs: list[str] = field(default_factory=list)
    links: list[Link] = field(default_factory=list)


def not_found_page(settings: Settings) -> HTMLResponse:
    return message_page(
        settings,
        "Order not found",
        "Check that you opened the whole link from your confirmation email.",
        "If you lost it, we can email you your licenses again.",
        status_code=404,
        link=("/licenses/recover", "Email me my licenses"),
    )


def _contact(settings: Settings) -> str:
    if settings.shop.contact_email:
        return f"If you need help, write to {settings.shop.contact_email}."
    return f"If you need help, contact {settings.shop.name}."


@dataclass(frozen=True, slots=True)
class _Seen:
    """What the page's view is chosen from."""

    order: Order
    lic: License | None
    settings: Settings
    cancelled: bool  # back from the provider's "cancel" link

    @property
    def pay(self) -> list[Link]:
        order = self.order
        return [Link(order.checkout_url, "Go to the payment page")] if order.checkout_url else []

    @property
    def again(self) -> Link:
        return Link(f"/buy/{self.order.product_id}", "Start a new order")

    @property
    def part_paid(self) -> bool:
        paid: int = self.order.paid_minor or 0
        amount: int = self.order.amount_minor
        return 0 < paid < amount


def _part_paid(seen: _Seen) -> View:
    order = seen.order
    paid = order.paid_minor or 0
    amount = price_text(order.amount_minor, order.currency)
    due = price_text(order.amount_minor - paid, order.currency)
    return View(
        "Part of your payment has arrived",
        "wait",
        True,
        [
            f"We received {price_text(paid, order.currency)} of {amount}. {due} is still due.",
            "Pay the rest on the payment page before it expires; your license is issued "
            "as soon as the full amount is confirmed.",
            _contact(seen.settings),
        ],
        seen.pay,
    )


def _created(seen: _Seen) -> View:
    if seen.part_paid:
        return _part_paid(seen)
    if seen.cancelled:
        return View(
            "Payment cancelled",
            "bad",
            True,
            ["You left the payment page, so nothing was charged.", "You can try again:"],
            [
                *[Link(link.href, "Return to the payment page") for link in seen.pay],
                Link(f"/buy/{seen.order.product_id}", "Choose another way to pay"),
            ],
        )
    return View(
        "Waiting for your payment",
        "wait",
        True,
        ["We have not seen your payment yet. This page updates as soon as it arrives."],
        seen.pay,
    )


def _pending(seen: _Seen) -> View:
    if seen.part_paid:
        return _part_paid(seen)
    if seen.order.provider == "btcpay":
        minutes = CONFIRM_MINUTES.get(seen.settings.btcpay.speed_policy, 10)
        return View(
            "Payment seen, confirming on the blockchain",
            "wait",
            True,
            [
                f"Your bitcoin payment has arrived and is being confirmed (about {minutes} "
                f"minute{'s' if minutes != 1 else ''}). Your license key appears here then.",
                "You can close this page: the key is also emailed to you.",
            ],
        )
    return View(
        "Payment is processing",
        "wait",
        True,
        [
            "Your payment was accepted and is being processed by your bank; some "
            "methods take a few days. Your license key appears here when it is done "
            "and is emailed to you.",
        ],
    )


def _settled(seen: _Seen) -> View:
    if seen.lic is None:
        return View(
            "Paid: preparing your license",
            "wait",
            True,
            ["Your payment is complete; your license key appears here in a moment."],
        )
    if seen.lic.status == LicenseStatus.ACTIVE:
        return View(f"{PAID_WORDS.get(seen.order.provider, 'Paid')}: thank you!", "ok", False)
    return _reversed(seen)


def _reversed(seen: _Seen) -> View:
    return View(
        "Payment refunded, license revoked",
        "bad",
        False,
        [
            "This payment was refunded or disputed, so the license below no longer works.",
            _contact(seen.settings),
        ],
        [seen.again],
    )


def _needs_review(seen: _Seen) -> View:
    if seen.lic is not None:
        return _reversed(seen)
    return View(
        "Your payment needs a manual check",
        "wait",
        False,
        [
            "Your payment arrived, but something about it (for example the amount or its "
            "timing) needs the seller to look at it before a license is issued. "
            "You do not need to pay again.",
            _contact(seen.settings),
        ],
    )


def _failed(seen: _Seen) -> View:
    if seen.lic is not None:
        return _reversed(seen)
    return View(
        "Payment failed or expired",
        "bad",
        False,
        [
            "No payment was completed for this order before it expired, so no license was "
            "issued. If you paid and the money left your account, do not pay again.",
            _contact(seen.settings),
        ],
        [seen.again],
    )


# One row per order status, read like the state diagram: created -> pending -> settled ->
# reversed, created/pending -> failed, and needs_review where a human must decide.
_VIEWS: dict[OrderStatus, Callable[[_Seen], View]] = {
    OrderStatus.CREATED: _created,
    OrderStatus.PENDING: _pending,
    OrderStatus.SETTLED: _settled,
    OrderStatus.REVERSED: _reversed,
    OrderStatus.NEEDS_REVIEW: _needs_review,
    OrderStatus.FAILED: _failed,
}


def _view(order: Order, lic: License | None, settings: Settings, *, cancelled: bool) -> View:
    seen = _Seen(order=order, lic=lic, settings=settings, cancelled=cancelled)
    return _VIEWS.get(order.status, _failed)(seen)


async def render_status_page(order: Order, state: AppState, *, cancelled: bool) -> HTMLResponse:
    settings = state.settings
    lic = await License.get_or_none(order_id=order.id)
    emailed = False
    if lic is not None:
        mail = await OutboxEmail.get_or_none(order_id=order.id, kind=LICENSE_EMAIL)
        emailed = mail is not None and mail.status == EmailStatus.SENT
    product = state.catalog.get(order.product_id)
    instructions = settings.shop.activation_instructions
    view = _view(order, lic, settings, cancelled=cancelled)
    # "1": poll the JSON for a new state; "email": the state is final but the key's email is
    # still queued, so re-fetch the page (the JSON does not carry the mail state) until the
    # page can say it was sent; "0": nothing left to wait for.
    active = lic is not None and lic.status == LicenseStatus.ACTIVE
    poll_mode = "1" if view.poll else ("email" if active and not emailed else "0")
    return render(
        "status.html",
        settings,
        headers=NO_STORE,
        view=view,
        poll_mode=poll_mode,
        order=order,
        license=lic,
        emailed=emailed,
        activation=[p.strip() for p in instructions.split("\n\n") if p.strip()],
        help_url=settings.license.activation_help_url,
        product_name=product.name if product else order.product_id,
        amount=price_text(order.amount_minor, order.currency),
        method=METHOD_WORDS.get(order.provider, order.provider),
    )
