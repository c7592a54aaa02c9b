"""The license API the buyer's app calls: validate, activate, deactivate, token, JWKS.

    POST /licenses/validate    {"key", "fingerprint"?}          200 verdict {valid, code, ...}
    POST /licenses/activate    {"key", "fingerprint", "label"?}  201 new seat / 200 same seat
    POST /licenses/deactivate  {"key", "fingerprint"}            204
    POST /licenses/token       {"key", "fingerprint"}            200 fresh signed token
    GET  /.well-known/jwks.json                                  the public signing keys

Refusals use the common error body plus the verdict code validate would give:
`{"error": "seat_limit", "code": "SEAT_LIMIT", "detail": ..., "license": {...}}`.
Every POST is rate limited per IP and per key (the shared limiter) and body-capped by
`BodyLimitMiddleware` as an API route. Keys are logged masked only. A POST that names a
foreign origin is refused (403 `origin_not_allowed`, `gateway/http/origins.py`): the buyer's
app names none, and a web page must not spend seats in its visitors' names. The body is read
as JSON whatever its Content-Type, as it always was: apps already shipped may send none
(`requests.post(url, data=json.dumps(...))` does not), and a release must not lock them out.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from gateway.http.errors import GatewayError
from gateway.http.limits import client_ip
from gateway.http.origins import check_origin
from gateway.licenses import inputs
from gateway.licenses import seats as license_seats
from gateway.licenses.keys import mask_key
from gateway.licenses.seats import LicenseRevoked, LicenseView, Seat, SeatLimitReached
from gateway.licenses.signing import Signer
from gateway.licenses.views import (
    NOT_ACTIVATED,
    license_block,
    not_found,
    refusal,
    revoked_detail,
    seat_block,
    token_block,
)
from gateway.ops import metrics
from gateway.state import AppState

log = logging.getLogger(__name__)


def _state(request: Request) -> AppState:
    state: AppState = request.app.state.gateway
    return state


def _signer(request: Request) -> Signer:
    """The signer loaded once at startup (`create_app`)."""
    return _state(request).signer


def _block(request: Request, view: LicenseView) -> dict[str, Any]:
    return license_block(view, _state(request).catalog)


def _seat_answer(
    request: Request, view: LicenseView, seat: Seat, fingerprint: str
) -> dict[str, Any]:
    """The seat, its license, and a fresh token for it."""
    return {
        "activation": seat_block(seat),
        "license": _block(request, view),
        **token_block(_signer(request), view, fingerprint),
    }


async def _read(request: Request) -> dict[str, Any]:
    """The JSON body, after the origin check and the per-IP budget (so floods of junk are
    refused cheaply too)."""
    state = _state(request)
    check_origin(request, state.settings)
    await state.limiter.check("license_per_ip", client_ip(request))
    return await inputs.json_object(request)


async def _limit_key(request: Request, key: str | None, raw_key: Any) -> None:
    # A key that cannot exist gets a bucket per spelling: still bounded per IP above.
    await _state(request).limiter.check("license_per_key", key or f"raw:{raw_key}")


async def validate(request: Request) -> Response:
    data = await _read(request)
    key = inputs.license_key(data)
    fingerprint = inputs.optional_fingerprint(data)
    await _limit_key(request, key, data.get("key"))
    found = None if key is None else await license_seats.look_up(key, fingerprint)
    if found is None:
        return JSONResponse(
            {"valid": False, "code": "NOT_FOUND", "detail": "no license with this key"}
        )
    view, holds_seat = found
    if view.revoked:
        code, detail = "REVOKED", revoked_detail(view)
    elif fingerprint is not None and not holds_seat:
        code, detail = "NOT_ACTIVATED", NOT_ACTIVATED
    else:
        code, detail = "VALID", "license is valid"
    return JSONResponse(
        {
            "valid": code == "VALID",
            "code": code,
            "detail": detail,
            "license": _block(request, view),
        }
    )


async def activate(request: Request) -> Response:
    data = await _read(request)
    key = inputs.license_key(data)
    fingerprint = inputs.required_fingerprint(data)
    label = inputs.label(data)
    await _limit_key(request, key, data.get("key"))
    if key is None:
        return not_found()
    try:
        result = await license_seats.activate(key, fingerprint, label)
    except LicenseRevoked as exc:
        return refusal(403, "REVOKED", revoked_detail(exc.view), block=_block(request, exc.view))
    except SeatLimitReached as exc:
        return refusal(
            403,
            "SEAT_LIMIT",
            f"all {exc.view.seat_limit} seats are in use; deactivate another machine first",
            block=_block(request, exc.view),
        )
    if result is None:
        return not_found()
    view, seat, created = result
    if created:
        log.info("license %s: seat %s activated", mask_key(key), seat.id)
    return JSONResponse(
        _seat_answer(request, view, seat, fingerprint), status_code=201 if created else 200
    )


async def token(request: Request) -> Response:
    data = await _read(request)
    key = inputs.license_key(data)
    fingerprint = inputs.required_fingerprint(data)
    await _limit_key(request, key, data.get("key"))
    found = None if key is None else await license_seats.find_seat(key, fingerprint)
    if found is None:
        return not_found()
    view, seat = found
    if view.revoked:
        return refusal(403, "REVOKED", revoked_detail(view), block=_block(request, view))
    if seat is None:
        return refusal(404, "NOT_ACTIVATED", NOT_ACTIVATED)
    return JSONResponse(_seat_answer(request, view, seat, fingerprint))


async def deactivate(request: Request) -> Response:
    data = await _read(request)
    key = inputs.license_key(data)
    fingerprint = inputs.required_fingerprint(data)
    await _limit_key(request, key, data.get("key"))
    if key is None or not await license_seats.deactivate(key, fingerprint):
        return not_found("no activation for this key and fingerprint")
    log.info("license %s: a seat was deactivated", mask_key(key))
    return Response(status_code=204)


async def jwks(request: Request) -> Response:
    # Rendered once at startup. A short cache: after `keys rotate` + restart, verifiers
    # meet the new kid within minutes (and a verifier may refetch on an unknown kid).
    # Public keys only: any origin may read them (a web app verifying in the browser).
    return Response(
        _signer(request).jwks_body,
        media_type="application/json",
        headers={"cache-control": "public, max-age=300", "access-control-allow-origin": "*"},
    )


Handler = Callable[[Request], Awaitable[Response]]


def counted(endpoint: str, handler: Handler) -> Handler:
    """Count every answer of a license endpoint by HTTP status (errors raised included)."""

    async def wrapper(request: Request) -> Response:
        try:
            response = await handler(request)
        except GatewayError as exc:
            metrics.LICENSE_API_REQUESTS.labels(endpoint, str(exc.status_code)).inc()
            raise
        metrics.LICENSE_API_REQUESTS.labels(endpoint, str(response.status_code)).inc()
        return response

    return wrapper


ROUTES: list[BaseRoute] = [
    *(
        Route(f"/licenses/{name}", counted(name, handler), methods=["POST"])
        for name, handler in (
            ("validate", validate),
            ("activate", activate),
            ("deactivate", deactivate),
            ("token", token),
        )
    ),
    Route("/.well-known/jwks.json", jwks, methods=["GET"]),
]
