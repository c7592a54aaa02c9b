"""Security headers on every answer, in one place, and the Origin check for our forms.

`SecurityHeadersMiddleware` (pure ASGI) adds to every HTML answer a strict
Content-Security-Policy (no inline script or style, no framing, forms may post only to us
and to the payment providers' hosted pages) and to every answer `X-Content-Type-Options:
nosniff` and `Referrer-Policy: no-referrer`: the status page URL carries the token that
guards the license key, so no page may leak its URL to another site. A page without a token
in its URL may set its own Referrer-Policy (the chooser and the lost-key form use
`same-origin`, because under `no-referrer` Chrome sends `Origin: null` on form posts and a
same-origin post could not be told from a forged one).
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from config.settings import Settings
from gateway.http.origins import origin_of

STRIPE_DEFAULT_API = "https://api.stripe.com"
STRIPE_CHECKOUT_ORIGIN = "https://checkout.stripe.com"


def provider_origins(settings: Settings) -> list[str]:
    """Where a checkout form may be redirected to: each configured provider's hosted page.

    Chrome enforces `form-action` on the redirect after a form post, so the provider's
    origin must be listed or the buyer is stuck on our page.
    """
    origins: list[str] = []
    if settings.stripe.api_base.rstrip("/") == STRIPE_DEFAULT_API:
        origins.append(STRIPE_CHECKOUT_ORIGIN)
    elif (stripe := origin_of(settings.stripe.api_base)) is not None:
        origins.append(stripe)  # a local fake serves its payment page itself
    if settings.btcpay.url and (btcpay := origin_of(settings.btcpay.url)) is not None:
        origins.append(btcpay)
    return list(dict.fromkeys(origins))


def content_security_policy(settings: Settings) -> str:
    form_action = " ".join(["'self'", *provider_origins(settings)])
    return (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        f"connect-src 'self'; form-action {form_action}; frame-ancestors 'none'; "
        "base-uri 'none'"
    )


_NOSNIFF = (b"x-content-type-options", b"nosniff")
_NO_REFERRER = (b"referrer-policy", b"no-referrer")


class SecurityHeadersMiddleware:
    """Adds the security headers to every HTTP answer (CSP only to HTML answers)."""

    def __init__(self, app: ASGIApp, *, csp: str) -> None:
        self.app = app
        self.csp = csp.encode()
        self.html_headers = [(b"content-security-policy", self.csp), (b"x-frame-options", b"DENY")]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                # One pass over the answer's headers: this runs on every request, the hot
                # /purchase-options and /licenses/validate included.
                headers = list(message.get("headers", ()))
                html = has_referrer_policy = False
                for name, value in headers:
                    lowered = name.lower()
                    if lowered == b"content-type":
                        html = value[:9].lower() == b"text/html"
                    elif lowered == b"referrer-policy":
                        has_referrer_policy = True
                headers.append(_NOSNIFF)
                if not has_referrer_policy:
                    headers.append(_NO_REFERRER)
                if html:
                    headers += self.html_headers
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
