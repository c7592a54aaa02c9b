"""What the buyer forms (the chooser's post, lost-key recovery) share.

Reading the post, the email field checked and refused in the buyer's words, the page for a
post from another site, and the rate-limit check whose refusal a form words itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response

from config.settings import Settings
from gateway.http.errors import TooManyRequests
from gateway.http.limits import client_ip
from gateway.mail.addresses import MAX_EMAIL_CHARS, InvalidEmail, Problem, normalize_email
from gateway.pages.templating import message_page
from gateway.state import AppState

_EMAIL_WORDS = {
    Problem.MISSING: "Please enter your email address: we send your license key to it.",
    Problem.TOO_LONG: "That email address is too long.",
    Problem.MALFORMED: "That email address does not look right: {}",
}
# No token in these URLs; `same-origin` keeps the Origin header on our own form posts
# (under `no-referrer` Chrome sends `Origin: null`).
FORM_HEADERS = {"referrer-policy": "same-origin", "cache-control": "no-store"}


def parse_email(raw: object) -> tuple[str | None, str | None]:
    """(normalised email, None) or (None, a sentence for the buyer)."""
    try:
        return normalize_email(raw), None
    except InvalidEmail as exc:
        return None, _EMAIL_WORDS[exc.problem].format(exc)


@dataclass(frozen=True, slots=True)
class BuyerPost:
    form: FormData
    # What the buyer typed, clipped, to show again in the form.
    shown_email: str
    # The normalised address, or None and the sentence that says what is wrong with it.
    email: str | None
    problem: str | None

    @classmethod
    async def read(cls, request: Request) -> BuyerPost:
        # Read (and so size-check: 413 past the cap) whatever was sent, form or not, before
        # parsing; `form()` then parses the cached bytes.
        await request.body()
        form = await request.form()
        raw = form.get("email")
        email, problem = parse_email(raw)
        shown = raw[:MAX_EMAIL_CHARS] if isinstance(raw, str) else ""
        return cls(form=form, shown_email=shown, email=email, problem=problem)


def foreign_post(
    settings: Settings, heading: str, refused: str, *, path: str, button: str
) -> Response:
    """403 for a form posted from another origin (`refused`, said in words).

    The way on is our own form at the public URL, never the same post again: a link back to
    the origin the buyer is on would only be refused once more.
    """
    here = f"{settings.public_url}{path}"
    return message_page(
        settings,
        heading,
        refused,
        f"Please open this shop at {settings.public_url} and use the form there.",
        status_code=403,
        headers=FORM_HEADERS,
        link=(here, button),
    )


async def over_limit(
    state: AppState, request: Request, rules: tuple[str, str], email: str
) -> TooManyRequests | None:
    """The refusal when this IP or this email (rules per IP, per email) posted too often."""
    ip_rule, email_rule = rules
    try:
        await state.limiter.check(ip_rule, client_ip(request))
        await state.limiter.check(email_rule, email.lower())
    except TooManyRequests as exc:
        return exc
    return None


def wait_words(refused: TooManyRequests) -> str:
    return f"Please wait {refused.extra['retry_after']} seconds and try again."
