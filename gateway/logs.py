"""Log format: one line per record, with the order id and provider when a record has them.

Two filters keep logs useful and safe: every record carries the request id of the request
it was made for, and uvicorn's access log never writes a query string of `/orders/...`
(the status token there is the only guard on the license key) nor any `token=` value.
"""

from __future__ import annotations

import logging
import re
import sys

from gateway.request_context import request_id_var

_CONTEXT_FIELDS = ("order_id", "provider", "dedupe_key", "request_id")
_TOKEN_VALUE = re.compile(r"(?i)((?:^|[?&;])[^=&;]*token=)[^&;]*")
REDACTED = "[redacted]"


class ContextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        context = " ".join(
            f"{name}={getattr(record, name)}"
            for name in _CONTEXT_FIELDS
            if getattr(record, name, None) is not None
        )
        return f"{line} [{context}]" if context else line


class RequestIdFilter(logging.Filter):
    """Adds `request_id` (None outside a request) to every record it sees."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = request_id_var.get()
        return True


def redact_path(path: str) -> str:
    """A request target safe to log: no query string on /orders, no `token=` value at all."""
    base, sep, query = path.partition("?")
    if not sep:
        return path
    if base.startswith("/orders"):
        return f"{base}?{REDACTED}"
    return f"{base}?{_TOKEN_VALUE.sub(lambda m: m.group(1) + REDACTED, query)}"


class AccessLogTokenFilter(logging.Filter):
    """For "uvicorn.access": its args are (client, method, path with query, version, status)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            record.args = (*args[:2], redact_path(args[2]), *args[3:])
        return True


def install_filters() -> None:
    """Idempotent: safe to call once per process start (serve, CLI, tests)."""
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, AccessLogTokenFilter) for f in access.filters):
        # On the logger, not a handler: uvicorn replaces the access log's handlers with
        # its own when it configures logging, but leaves logger filters in place.
        access.addFilter(AccessLogTokenFilter())


def setup_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(ContextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    install_filters()
