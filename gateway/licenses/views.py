"""What the license API answers: the license block, a seat, a fresh signed token, and the
refusals (the common error body plus the verdict code `validate` would give)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from starlette.responses import JSONResponse

from config.catalog import Catalog
from gateway.licenses.seats import LicenseView, Seat
from gateway.licenses.signing import Signer

NOT_ACTIVATED = "this machine holds no seat; activate it first"


def iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def license_block(view: LicenseView, catalog: Catalog) -> dict[str, Any]:
    product = catalog.get(view.product_id)
    block: dict[str, Any] = {
        "status": view.status.value,
        "product": view.product_id,
        "product_name": product.name if product else view.product_id,
        "tier": view.tier,
        "addons": view.addons,
        "seats": view.seat_limit,
        "seats_used": view.seats_used,
        "issued_at": iso(view.issued_at),
    }
    if view.revoked:
        block["revoked_at"] = iso(view.revoked_at)
        block["revoke_reason"] = view.revoke_reason
    return block


def revoked_detail(view: LicenseView) -> str:
    return f"license revoked: {view.revoke_reason or 'no reason given'}"


def seat_block(seat: Seat) -> dict[str, Any]:
    return {
        "id": seat.id,
        "fingerprint": seat.fingerprint,
        "label": seat.label,
        "created_at": iso(seat.created_at),
    }


def token_block(signer: Signer, view: LicenseView, fingerprint: str) -> dict[str, Any]:
    """A token for this seat, signed now by the current key."""
    claims = {
        "sub": str(view.id),
        "aud": view.product_id,
        "tier": view.tier,
        "addons": view.addons,
        "seats": view.seat_limit,
        "fpr": fingerprint,
    }
    token, expires_at = signer.sign(claims, datetime.now(UTC))
    return {"token": token, "token_expires_at": iso(expires_at), "kid": signer.current.kid}


def refusal(
    status: int, code: str, detail: str, *, block: dict[str, Any] | None = None
) -> JSONResponse:
    """The common error body plus the verdict code validate would give."""
    body: dict[str, Any] = {"error": code.lower(), "code": code, "detail": detail}
    if block is not None:
        body["license"] = block
    return JSONResponse(body, status_code=status)


def not_found(detail: str = "no license with this key") -> JSONResponse:
    return refusal(404, "NOT_FOUND", detail)
