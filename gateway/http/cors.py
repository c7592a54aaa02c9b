"""CORS for the seller's own sites (`settings.allowed_origins`), only where they need it.

A seller's page calls `/purchase-options/{product}` and the JSON checkout with `fetch()`
and loads `/static/checkout.js`; nothing else (status pages, license API, webhooks) is
opened to other origins.
"""

from __future__ import annotations

from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

CORS_PREFIXES = ("/purchase-options/", "/checkout/", "/static/")


class ScopedCORSMiddleware:
    """Starlette's CORSMiddleware (preflight included), applied to `CORS_PREFIXES` only."""

    def __init__(self, app: ASGIApp, *, origins: list[str]) -> None:
        self.app = app
        self.cors = CORSMiddleware(
            app,
            allow_origins=[o.rstrip("/") for o in origins],
            allow_methods=["GET", "POST"],
            allow_headers=["content-type", "idempotency-key"],
            max_age=600,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["path"].startswith(CORS_PREFIXES)
            # Only a cross-origin browser request names an Origin; everything else (the
            # hot same-origin and server-to-server calls) skips the CORS machinery.
            and any(name == b"origin" for name, _ in scope["headers"])
        ):
            await self.cors(scope, receive, send)
            return
        await self.app(scope, receive, send)
