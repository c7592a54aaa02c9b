"""Log format: one line per record, with the order id and provider when a record has them.

`GATEWAY_LOG_FORMAT=text` (default) is for a terminal; `json` writes one JSON object per
line for log shippers. Both pass every message through `redact_keys`, a last line of
defence: code logs `mask_key(key)`, and a whole license key never reaches a log line.

Two filters keep logs useful and safe: every record carries the request id of the request
it was made for, and uvicorn's access log never writes a query string of `/orders/...`
(the status token there is the only guard on the license key) nor any `token=` value.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

from gateway.ops.context import request_id_var

_CONTEXT_FIELDS = ("order_id", "provider", "event", "dedupe_key", "request_id")
_TOKEN_VALUE = re.compile(r"(?i)((?:^|[?&;])[^=&;]*token=)[^&;]*")
REDACTED = "[redacted]"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# The shape of license keys (gateway.licenses.keys: no 0/O/1/I/L).
_GROUP = "[2-9A-HJKMNP-Z]{4}"
_KEY = re.compile(rf"\b{_GROUP}-{_GROUP}-{_GROUP}-({_GROUP})\b")


def redact_keys(text: str) -> str:
    """Mask anything shaped like a license key, keeping the first and last group."""
    return _KEY.sub(lambda m: f"{m.group(0)[:4]}-****-****-{m.group(1)}", text)


class ContextFormatter(logging.Formatter):
    def __init__(self, fmt: str = TEXT_FORMAT, **kwargs: Any) -> None:
        super().__init__(fmt, **kwargs)

    def format(self, record: logging.LogRecord) -> str:
        line = redact_keys(super().format(record))
        context = " ".join(
            f"{name}={getattr(record, name)}"
            for name in _CONTEXT_FIELDS
            if getattr(record, name, None) is not None
        )
        return f"{line} [{context}]" if context else line


class JsonFormatter(logging.Formatter):
    """One JSON object per record: timestamp, level, logger, message and the context."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": redact_keys(record.getMessage()),
        }
        for name in _CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                doc[name] = str(value)
        request_id = getattr(record, "request_id", None) or request_id_var.get()
        if request_id:
            doc["request_id"] = request_id
        if record.exc_info:
            doc["exception"] = redact_keys(self.formatException(record.exc_info))
        return json.dumps(doc, ensure_ascii=False, default=str)


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


def make_formatter(log_format: str) -> logging.Formatter:
    return JsonFormatter() if log_format == "json" else ContextFormatter()


def setup_logging(level: str, log_format: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(make_formatter(log_format))
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("tortoise").setLevel(_tortoise_level(level))
    install_filters()


def _tortoise_level(level: str) -> str:
    # Tortoise's only INFO line is "Tortoise-ORM shutdown", logged when the migration step
    # closes its connection: at every start and CLI command it reads like a crash. DEBUG
    # (SQL) stays available, and a level above WARNING still applies.
    wanted = logging.getLevelName(level.upper())
    if not isinstance(wanted, int) or wanted == logging.DEBUG:
        return level.upper()
    return logging.getLevelName(max(wanted, logging.WARNING))


def uvicorn_log_config(level: str, log_format: str = "text") -> dict[str, Any]:
    """`log_config` for uvicorn: each worker process sets up the same format as the CLI,
    and uvicorn's own loggers (server, access) go through it too."""
    formatter = (
        {"()": "gateway.ops.logs.JsonFormatter"}
        if log_format == "json"
        else {"()": "gateway.ops.logs.ContextFormatter"}
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"gateway": formatter},
        "filters": {"request_id": {"()": "gateway.ops.logs.RequestIdFilter"}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "gateway",
                "filters": ["request_id"],
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"handlers": ["stderr"], "level": level},
        "loggers": {
            **{
                name: {"handlers": [], "propagate": True, "level": level}
                for name in ("uvicorn", "uvicorn.error", "uvicorn.access")
            },
            "tortoise": {"handlers": [], "propagate": True, "level": _tortoise_level(level)},
        },
    }
