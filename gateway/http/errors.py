"""Gateway errors and the one table that maps every error to a JSON response.

GatewayError(status, code)            -> {"error": code, "detail": text}
├── NotFound                  404
├── Forbidden                 403   (a state-changing request from a foreign origin)
├── InvalidRequest            422   (names the field)
├── PayloadTooLarge           413
├── UnsupportedMediaType      415   (a JSON endpoint sent something else)
├── TooManyRequests           429   (with Retry-After)
└── ServiceUnavailable        503
Provider errors (providers/errors.py) and database outages are mapped in `handlers()`.

What an anonymous caller may read: our own messages, never a provider's or a driver's text
(an API key fragment, a URL with a token, a permission list). Those are logged for the
operator; the caller gets a generic message and the request id that finds the log line.
Every 5xx answer carries `request_id`.
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from tortoise.exceptions import DBConnectionError, IntegrityError, OperationalError
from tortoise.exceptions import ValidationError as OrmValidationError

from gateway.db.database import CONNECTION_LOST
from gateway.ops.context import request_id_var
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


class Forbidden(GatewayError):
    status_code = 403
    code = "forbidden"


class InvalidRequest(GatewayError):
    status_code = 422
    code = "invalid_request"


class PayloadTooLarge(GatewayError):
    status_code = 413
    code = "payload_too_large"


class UnsupportedMediaType(GatewayError):
    status_code = 415
    code = "unsupported_media_type"


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
    doc: dict[str, Any] = {"error": code, "detail": detail, **extra}
    request_id = request_id_var.get()
    if status >= 500 and request_id is not None:
        doc.setdefault("request_id", request_id)
    response = JSONResponse(doc, status_code=status)
    if request_id is not None:
        # The 500 answer is rendered outside the request-id middleware; set it here too.
        response.headers["x-request-id"] = request_id
    return response


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
    # The provider's text can hold URLs with tokens or account details: operator only.
    log.warning("provider unavailable: %s", exc)
    return error_response(
        503, "provider_unavailable", "the payment provider is unavailable, retry later"
    )


async def _rejected(_: Request, exc: Exception) -> Response:
    log.error("provider rejected the request: %s", exc)
    return error_response(
        502, "provider_rejected", "the payment provider refused the request; contact the seller"
    )


async def _database(_: Request, exc: Exception) -> Response:
    log.error("database unavailable: %s: %s", type(exc).__name__, exc)
    return error_response(503, "database_unavailable", "database unavailable, retry later")


async def _conflict(_: Request, exc: Exception) -> Response:
    # A unique constraint lost a race with a concurrent request: the row exists, the
    # database is fine. Retrying the same request gets the winner's answer.
    log.warning("unique constraint conflict: %s", exc)
    return error_response(409, "conflict", "a concurrent request changed this; retry")


async def _invalid_value(_: Request, exc: Exception) -> Response:
    # A value the storage refuses (too long for its column, ...) that no check caught
    # earlier: the caller's input, so a 4xx, never a 500 that a provider retries for days.
    log.warning("value refused by the model layer: %s", exc)
    return error_response(422, "invalid_request", "a value in the request is not acceptable")


async def _too_deep(_: Request, exc: Exception) -> Response:
    # `json.loads` of a deeply nested document raises RecursionError, not ValueError.
    log.warning("request refused: nesting too deep")
    return error_response(400, "bad_request", "request body is nested too deeply")


async def _unexpected(_: Request, exc: Exception) -> Response:
    log.exception("unhandled error", exc_info=exc)
    return error_response(500, "internal_error", "internal error")


def handlers() -> dict[Any, Any]:
    # Starlette picks the handler of the nearest class in the exception's MRO, so
    # IntegrityError (an OperationalError subclass in Tortoise) gets its own 409.
    return {
        GatewayError: _gateway_error,
        HTTPException: _http_error,
        WebhookSignatureError: _signature,
        WebhookPayloadError: _payload,
        ProviderUnavailable: _unavailable,
        ProviderRejected: _rejected,
        IntegrityError: _conflict,
        OrmValidationError: _invalid_value,
        RecursionError: _too_deep,
        DBConnectionError: _database,
        OperationalError: _database,
        ConnectionError: _database,
        # A PostgreSQL connection lost mid-request surfaces as the driver's own errors.
        **dict.fromkeys(CONNECTION_LOST, _database),
        OSError: _database,
        Exception: _unexpected,
    }
