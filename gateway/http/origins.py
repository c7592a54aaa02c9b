"""Origins: which sites may post the gateway's forms.

A browser posts a form cross-site without a CORS preflight, so a foreign page could
auto-submit one and create orders and provider checkouts in a visitor's name.
`check_form_origin` refuses such a post with 403 (the JSON checkout); the buyer pages ask
`form_origin_allowed` and answer in words. `origin_of` is also what the CSP's
`form-action` list is built from.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from config.settings import Settings
from gateway.http.errors import Forbidden

_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data", "text/plain")
_DEFAULT_PORTS = {"http": 80, "https": 443}


def origin_of(url: str) -> str | None:
    """`scheme://host[:port]`, lower-cased, default port dropped; None if not http(s)."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}" + (f":{port}" if port and port != _DEFAULT_PORTS[scheme] else "")


def allowed_form_origins(settings: Settings) -> set[str]:
    """The seller's own sites (`allowed_origins`) plus the gateway's public origin."""
    origins = {origin_of(o) for o in [*settings.allowed_origins, settings.public_url]}
    return {o for o in origins if o is not None}


def form_origin_allowed(request: Any, settings: Settings) -> bool:
    """Did this browser post come from our own pages or a seller site in settings?

    A browser always names the origin of a cross-site POST (`Origin`, or at least
    `Referer`); a client that sends neither is not a browser, so not CSRF, and passes.
    `Origin: null` (sandboxed frame, file://) is never allowed.
    """
    raw = request.headers.get("origin")
    if raw is None:
        raw = request.headers.get("referer")
        if raw is None:
            return True
    origin = origin_of(raw)
    return origin is not None and origin in allowed_form_origins(settings)


def check_form_origin(request: Any, settings: Settings) -> None:
    """Raise `Forbidden` (403) for a form post whose Origin/Referer is another site.

    Only form-encoded bodies: a browser sends those cross-site without a CORS preflight,
    JSON it does not.
    """
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type in _FORM_TYPES and not form_origin_allowed(request, settings):
        raise Forbidden(
            "this form must be posted from the seller's own site", code="origin_not_allowed"
        )
