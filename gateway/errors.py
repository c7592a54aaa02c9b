"""Gateway errors and the one table that maps every error to a JSON response.

GatewayError(status, code)            -> {"error": code, "detail": text}
├── NotFound                  404
├── InvalidRequest            422   (names the field)
├── PayloadTooLarge           413
├── TooManyRequests           429   (with Retry-After)
└── ServiceUnavailable        503
Provider errors (providers/errors.py) and database outages are mapped in `handlers()`.
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from tortoise.exceptions import DBConnectionError, OperationalError

from gateway.db import CONNECTION_LOST
from providers.errors import (
    ProviderRejected,
    ProviderUnavailable,
    WebhookPayloadError,
    WebhookSignatureError,
)

log = logging.getLogger(__name__)


class GatewayError(Exception):
    status_code = 400
    code = "bad_request"

    def __init__(self, detail: str, *, code: str | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        if code is not None:
            self.code = code
        self.extra = extra
        # Response headers that belong to the error (Retry-After on 429).
        self.headers: dict[str, str] = {}


class NotFound(GatewayError):
    status_code = 404
    code = "not_found"


class InvalidRequest(GatewayError):
    status_code = 422
    code = "invalid_request"


class PayloadTooLarge(GatewayError):
    status_code = 413
    code = "payload_too_large"


class TooManyRequests(GatewayError):
    status_code = 429
    code = "rate_limited"

    def __init__(self, detail: str, *, retry_after: int) -> None:
        super().__init__(detail, retry_after=retry_after)
        self.headers = {"retry-after": str(retry_after)}


class ServiceUnavailable(GatewayError):
    status_code = 503
    code = "service_unavailable"


def error_response(status: int, code: str, detail: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": code, "detail": detail, **extra}, status_code=status)


async def _gateway_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, GatewayError)
    response = error_response(exc.status_code, exc.code, exc.detail, **exc.extra)
    response.headers.update(exc.headers)
    return response


async def _http_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return error_response(exc.status_code, code, str(exc.detail))


async def _signature(_: Request, exc: Exception) -> Response:
    log.warning("webhook rejected: %s", exc)
    return error_response(400, "bad_signature", str(exc))


async def _payload(_: Request, exc: Exception) -> Response:
    log.warning("webhook payload rejected: %s", exc)
    return error_response(400, "bad_payload", str(exc))


async def _unavailable(_: Request, exc: Exception) -> Response:
    log.warning("provider unavailable: %s", exc)
    return error_response(503, "provider_unavailable", str(exc))


async def _rejected(_: Request, exc: Exception) -> Response:
    log.error("provider rejected the request: %s", exc)
    return error_response(502, "provider_rejected", str(exc))


async def _database(_: Request, exc: Exception) -> Response:
    log.error("database unavailable: %s", exc)
    return error_response(503, "database_unavailable", "database unavailable, retry later")


async def _unexpected(_: Request, exc: Exception) -> Response:
    log.exception("unhandled error", exc_info=exc)
    return error_response(500, "internal_error", "internal error")


def handlers() -> dict[Any, Any]:
    return {
        GatewayError: _gateway_error,
        HTTPException: _http_error,
        WebhookSignatureError: _signature,
        WebhookPayloadError: _payload,
        ProviderUnavailable: _unavailable,
        ProviderRejected: _rejected,
        DBConnectionError: _database,
        OperationalError: _database,
        ConnectionError: _database,
        # A PostgreSQL connection lost mid-request surfaces as the driver's own errors.
        **dict.fromkeys(CONNECTION_LOST, _database),
        OSError: _database,
        Exception: _unexpected,
    }
