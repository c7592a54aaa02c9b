"""The license API the buyer's app calls: validate, activate, deactivate, token, JWKS.

    POST /licenses/validate    {"key", "fingerprint"?}          200 verdict {valid, code, ...}
    POST /licenses/activate    {"key", "fingerprint", "label"?}  201 new seat / 200 same seat
    POST /licenses/deactivate  {"key", "fingerprint"}            204
    POST /licenses/token       {"key", "fingerprint"}            200 fresh signed token
    GET  /.well-known/jwks.json                                  the public signing keys

Refusals use the common error body plus the verdict code validate would give:
`{"error": "seat_limit", "code": "SEAT_LIMIT", "detail": ..., "license": {...}}`.
Every POST is rate limited per IP and per key (the shared limiter) and body-capped by
`BodyLimitMiddleware` as an API route. Keys are logged masked only.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from gateway.http import json_body as json_text
from gateway.http.errors import GatewayError, InvalidRequest
from gateway.http.limits import client_ip
from gateway.licenses import seats as license_seats
from gateway.licenses.issuing import ALPHABET, GROUP_LEN, GROUPS, mask_key, normalize_key
from gateway.licenses.seats import LicenseRevoked, LicenseView, Seat, SeatLimitReached
from gateway.licenses.signing import Signer
from gateway.ops import metrics
from gateway.state import AppState

log = logging.getLogger(__name__)

MAX_FINGERPRINT = 128  # Activation.fingerprint / .label column sizes
MAX_LABEL = 128
MAX_KEY_INPUT = 128  # generous for pasted keys with spaces; longer is not a key
_KEY_LEN = GROUPS * GROUP_LEN + GROUPS - 1
NOT_ACTIVATED = "this machine holds no seat; activate it first"


def _state(request: Request) -> AppState:
    state: AppState = request.app.state.gateway
    return state


def signer(request: Request) -> Signer:
    """The signer loaded once at startup (`create_app`)."""
    return _state(request).signer


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        data = json_text.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: "[[[[..." nested past the limit
        raise InvalidRequest("body: must be a JSON object", field="body") from None
    if not isinstance(data, dict):
        raise InvalidRequest("body: must be a JSON object", field="body")
    return data


def _text(data: dict[str, Any], name: str, *, limit: int, required: bool) -> str | None:
    value = data.get(name)
    if value is None:
        if required:
            raise InvalidRequest(f"{name}: is required", field=name)
        return None
    if not isinstance(value, str):
        raise InvalidRequest(f"{name}: must be a string", field=name)
    value = value.strip()
    if required and not value:
        raise InvalidRequest(f"{name}: must not be empty", field=name)
    if len(value) > limit:
        raise InvalidRequest(f"{name}: at most {limit} characters", field=name)
    # PostgreSQL refuses NUL in text, and control characters have no place in these fields.
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise InvalidRequest(f"{name}: must not contain control characters", field=name)
    return value


def _key(data: dict[str, Any]) -> str | None:
    """The canonical key, or None when it cannot be any key (answered like an unknown one)."""
    raw = _text(data, "key", limit=MAX_KEY_INPUT, required=True)
    assert raw is not None
    key = normalize_key(raw)
    if len(key) != _KEY_LEN or any(ch not in ALPHABET for ch in key.replace("-", "")):
        return None
    return key


async def _read(request: Request) -> dict[str, Any]:
    """The JSON body, after the per-IP budget (so floods of junk are refused cheaply too)."""
    await _state(request).limiter.check("license_per_ip", client_ip(request))
    return await _body(request)


async def _limit_key(request: Request, key: str | None, raw_key: Any) -> None:
    # A key that cannot exist gets a bucket per spelling: still bounded per IP above.
    await _state(request).limiter.check("license_per_key", key or f"raw:{raw_key}")


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def license_block(request: Request, view: LicenseView) -> dict[str, Any]:
    product = _state(request).catalog.get(view.product_id)
    block: dict[str, Any] = {
        "status": view.status.value,
        "product": view.product_id,
        "product_name": product.name if product else view.product_id,
        "tier": view.tier,
        "addons": view.addons,
        "seats": view.seat_limit,
        "seats_used": view.seats_used,
        "issued_at": _iso(view.issued_at),
    }
    if view.revoked:
        block["revoked_at"] = _iso(view.revoked_at)
        block["revoke_reason"] = view.revoke_reason
    return block


def _revoked(view: LicenseView) -> str:
    return f"license revoked: {view.revoke_reason or 'no reason given'}"


def _seat_block(seat: Seat) -> dict[str, Any]:
    return {
        "id": seat.id,
        "fingerprint": seat.fingerprint,
        "label": seat.label,
        "created_at": _iso(seat.created_at),
    }


def _token(request: Request, view: LicenseView, fingerprint: str) -> dict[str, Any]:
    claims = {
        "sub": str(view.id),
        "aud": view.product_id,
        "tier": view.tier,
        "addons": view.addons,
        "seats": view.seat_limit,
        "fpr": fingerprint,
    }
    sign = signer(request)
    token, expires_at = sign.sign(claims, datetime.now(UTC))
    return {"token": token, "token_expires_at": _iso(expires_at), "kid": sign.current.kid}


def _refusal(
    status: int, code: str, detail: str, *, block: dict[str, Any] | None = None
) -> JSONResponse:
    """The common error body plus the verdict code validate would give."""
    body: dict[str, Any] = {"error": code.lower(), "code": code, "detail": detail}
    if block is not None:
        body["license"] = block
    return JSONResponse(body, status_code=status)


def _not_found(detail: str = "no license with this key") -> JSONResponse:
    return _refusal(404, "NOT_FOUND", detail)


async def validate(request: Request) -> Response:
    data = await _read(request)
    key = _key(data)
    fingerprint = _text(data, "fingerprint", limit=MAX_FINGERPRINT, required=False) or None
    await _limit_key(request, key, data.get("key"))
    found = None if key is None else await license_seats.look_up(key, fingerprint)
    if found is None:
        return JSONResponse(
            {"valid": False, "code": "NOT_FOUND", "detail": "no license with this key"}
        )
    view, holds_seat = found
    if view.revoked:
        code, detail = "REVOKED", _revoked(view)
    elif fingerprint is not None and not holds_seat:
        code, detail = "NOT_ACTIVATED", NOT_ACTIVATED
    else:
        code, detail = "VALID", "license is valid"
    return JSONResponse(
        {
            "valid": code == "VALID",
            "code": code,
            "detail": detail,
            "license": license_block(request, view),
        }
    )


async def activate(request: Request) -> Response:
    data = await _read(request)
    key = _key(data)
    fingerprint = _text(data, "fingerprint", limit=MAX_FINGERPRINT, required=True)
    label = _text(data, "label", limit=MAX_LABEL, required=False) or ""
    assert fingerprint is not None
    await _limit_key(request, key, data.get("key"))
    if key is None:
        return _not_found()
    try:
        result = await license_seats.activate(key, fingerprint, label)
    except LicenseRevoked as exc:
        return _refusal(403, "REVOKED", _revoked(exc.view), block=license_block(request, exc.view))
    except SeatLimitReached as exc:
        return _refusal(
            403,
            "SEAT_LIMIT",
            f"all {exc.view.seat_limit} seats are in use; deactivate another machine first",
            block=license_block(request, exc.view),
        )
    if result is None:
        return _not_found()
    view, seat, created = result
    if created:
        log.info("license %s: seat %s activated", mask_key(key), seat.id)
    return JSONResponse(
        {
            "activation": _seat_block(seat),
            "license": license_block(request, view),
            **_token(request, view, fingerprint),
        },
        status_code=201 if created else 200,
    )


async def token(request: Request) -> Response:
    data = await _read(request)
    key = _key(data)
    fingerprint = _text(data, "fingerprint", limit=MAX_FINGERPRINT, required=True)
    assert fingerprint is not None
    await _limit_key(request, key, data.get("key"))
    found = None if key is None else await license_seats.find_seat(key, fingerprint)
    if found is None:
        return _not_found()
    view, seat = found
    if view.revoked:
        return _refusal(403, "REVOKED", _revoked(view), block=license_block(request, view))
    if seat is None:
        return _refusal(404, "NOT_ACTIVATED", NOT_ACTIVATED)
    return JSONResponse(
        {
            "activation": _seat_block(seat),
            "license": license_block(request, view),
            **_token(request, view, fingerprint),
        }
    )


async def deactivate(request: Request) -> Response:
    data = await _read(request)
    key = _key(data)
    fingerprint = _text(data, "fingerprint", limit=MAX_FINGERPRINT, required=True)
    assert fingerprint is not None
    await _limit_key(request, key, data.get("key"))
    if key is None or not await license_seats.deactivate(key, fingerprint):
        return _not_found("no activation for this key and fingerprint")
    log.info("license %s: a seat was deactivated", mask_key(key))
    return Response(status_code=204)


async def jwks(request: Request) -> Response:
    # Rendered once at startup. A short cache: after `keys rotate` + restart, verifiers
    # meet the new kid within minutes (and a verifier may refetch on an unknown kid).
    # Public keys only: any origin may read them (a web app verifying in the browser).
    return Response(
        signer(request).jwks_body,
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
