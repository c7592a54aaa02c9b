"""Request ids: one per request, in the `X-Request-ID` answer header, logs and 5xx bodies.

A caller (or a proxy in front) may bring its own id; a sane one is kept so logs line up
across hops, anything else is replaced. A buyer who quotes the id from a generic error
answer lets the operator find the full detail in the log.
"""

from __future__ import annotations

import re
import secrets

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.ops.context import request_id_var

HEADER = "x-request-id"
_HEADER_BYTES = HEADER.encode()
# Printable and short: it is echoed in a header and written to logs verbatim.
_SANE = re.compile(r"^[A-Za-z0-9._:-]{8,64}$")


def new_request_id() -> str:
    return secrets.token_hex(8)


def accept_request_id(raw: str | None) -> str:
    """The incoming id if it is sane, else a fresh one."""
    return raw if raw is not None and _SANE.match(raw) else new_request_id()


class RequestIdMiddleware:
    """Pure ASGI: sets `request_id_var` for the request and echoes it in the answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = None
        for name, value in scope["headers"]:
            if name == _HEADER_BYTES:
                incoming = value.decode("latin-1")
                break
        request_id = accept_request_id(incoming)
        # Not reset afterwards on purpose: Starlette renders an unhandled error's 500 in
        # its outermost middleware, after this one returned, and that answer must carry the
        # id too. Each request runs in its own task (own context), so nothing leaks.
        request_id_var.set(request_id)

        encoded = request_id.encode()

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                if not any(name.lower() == _HEADER_BYTES for name, _ in headers):
                    message = {**message, "headers": [*headers, (_HEADER_BYTES, encoded)]}
            await send(message)

        await self.app(scope, receive, send_with_id)
