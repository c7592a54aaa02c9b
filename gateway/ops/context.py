"""Per-request context for log lines: the request id (set by the request-id middleware).

A contextvar, so every log record made while handling a request can carry the id that the
client also sees in its `X-Request-ID` header and in generic error answers.
"""

from __future__ import annotations

from contextvars import ContextVar

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)
