"""Origins: which sites may send a request that creates or changes something.

A browser sends some cross-site POSTs without asking anyone first: forms, and any `fetch`
that stays a "simple" request (`mode: "no-cors"`, a form type, `text/plain` or no
Content-Type at all, as with a Blob body). A foreign page could so create orders and
provider checkouts, or spend seats, in a visitor's name. One rule covers every route that
changes state (the checkout, the chooser's post, the lost-key form, the license API;
webhooks are signed and exempt): the origin the request names, by `Origin` or else
`Referer`, must be one of `allowed_origins(settings)`. `refused_origin` applies it (the buyer
pages answer a refusal in words) and `check_origin` raises the JSON 403.

A request that names neither header passes: browsers name the origin of every cross-site
POST (and `same-origin` referrer policy keeps it on our own forms), so such a request
comes from a program (a buyer's app, a seller's server, curl), which could send any
header it liked and carries no visitor's standing with it. `Origin: null` (a sandboxed
frame, a `file://` page) is never allowed.
"""

from __future__ import annotations

import functools
import logging
from typing import Any
from urllib.parse import SplitResult, urlsplit

from config.origins import DEFAULT_PORTS, origin_of
from config.settings import Settings, env_name
from gateway.http.errors import Forbidden

__all__ = [
    "LOOPBACK_HOSTS",
    "allowed_origins",
    "check_origin",
    "origin_of",
    "own_origins",
    "port_mismatch",
    "refused_origin",
]

log = logging.getLogger(__name__)

# One machine, three spellings: a browser on the gateway's own host may use any of them.
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")
# Of the header as seen, in the log and on the page: the check runs before any rate limit,
# so an 8 KB Origin must not become 8 KB of log (and of page) per request.
_MAX_SHOWN = 100


def _host(parts: SplitResult) -> str:
    """The host as an origin spells it (an IPv6 address in brackets)."""
    host = parts.hostname or ""
    return f"[{host}]" if ":" in host else host


def own_origins(settings: Settings) -> list[str]:
    """The gateway's own origins: `public_url`'s, its loopback twins, the configured aliases."""
    return _own(settings.public_url, tuple(settings.origin_aliases))


def _own(public_url: str, aliases: tuple[str, ...]) -> list[str]:
    public = origin_of(public_url)
    origins = [public] if public is not None else []
    parts = urlsplit(public or "")
    if _host(parts) in LOOPBACK_HOSTS:
        port = f":{parts.port}" if parts.port else ""
        origins += [f"{parts.scheme}://{twin}{port}" for twin in LOOPBACK_HOSTS]
    return list(dict.fromkeys([*origins, *aliases]))


def allowed_origins(settings: Settings) -> frozenset[str]:
    """Our own origins plus the seller's sites (`allowed_origins`, which CORS lets call)."""
    return _allowed(
        settings.public_url, tuple(settings.origin_aliases), tuple(settings.allowed_origins)
    )


# Every state-changing POST asks; parsing the URLs once per settings, not once per request,
# keeps the check off the hot path's bill. Keyed on the inputs (plain strings), not on the
# settings object, so a test's second Settings gets its own answer.
@functools.lru_cache(maxsize=16)
def _allowed(public_url: str, aliases: tuple[str, ...], sellers: tuple[str, ...]) -> frozenset[str]:
    seller_origins = (origin_of(o) for o in sellers)
    return frozenset([*_own(public_url, aliases), *(o for o in seller_origins if o is not None)])


def _shown(text: str) -> str:
    return text if len(text) <= _MAX_SHOWN else text[:_MAX_SHOWN] + "…"


def refused_origin(request: Any, settings: Settings) -> str | None:
    """None when the request may go on; otherwise the origin it named, logged once."""
    raw = request.headers.get("origin")
    if raw is None:
        raw = request.headers.get("referer")
        if raw is None:
            return None
    origin = origin_of(raw)
    if origin is not None and origin in allowed_origins(settings):
        return None
    seen = _shown(origin or raw)
    log.warning(
        "refused %s %s from origin %r: not this gateway's address %s; if the gateway is "
        "reached there too, add it to %s, if it is the seller's site, to %s",
        request.method,
        request.url.path,
        seen,
        settings.public_url,
        env_name("origin_aliases"),
        env_name("allowed_origins"),
    )
    return seen


def check_origin(request: Any, settings: Settings) -> None:
    """Raise `Forbidden` (403 `origin_not_allowed`) when `refused_origin` refuses."""
    if refused_origin(request, settings) is not None:
        raise Forbidden(
            "this request must come from the seller's own site or this gateway's pages",
            code="origin_not_allowed",
        )


def port_mismatch(settings: Settings, port: int) -> str | None:
    """Why listening on `port` contradicts a loopback `public_url` (None if it does not).

    On one machine nothing sits between the browser and the server, so the public URL's port
    is the port: another one sends buyers' payment returns and status links elsewhere.
    """
    public = origin_of(settings.public_url)
    parts = urlsplit(public or "")
    host = _host(parts)
    if host not in LOOPBACK_HOSTS:
        return None
    public_port = parts.port or DEFAULT_PORTS[parts.scheme]
    if public_port == port:
        return None
    return (
        f"serving on port {port} but {env_name('public_url')} is {settings.public_url} "
        f"(port {public_port}): payment returns and status links will point at the wrong "
        f"place; set {env_name('public_url')}={parts.scheme}://{host}:{port} or serve on "
        f"port {public_port}"
    )
