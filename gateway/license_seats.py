"""License look-ups and seats for the license API: validate, activate, deactivate.

Seats hold under concurrency from any number of processes sharing one database: an
activation locks its license row (`SELECT ... FOR UPDATE` on PostgreSQL; SQLite runs one
writer at a time) and counts + inserts in that same transaction. The unique
`(license, fingerprint)` index turns a racing second activation of one machine into the
existing seat instead of a second one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from tortoise.exceptions import IntegrityError
from tortoise.expressions import Q
from tortoise.functions import Count
from tortoise.transactions import in_transaction

from gateway.models import Activation, License, LicenseStatus


@dataclass(frozen=True, slots=True)
class LicenseView:
    """What the API shows of a license (never the key or the buyer's email)."""

    id: int
    product_id: str
    tier: str
    addons: list[str]
    seat_limit: int
    status: LicenseStatus
    issued_at: datetime
    revoked_at: datetime | None
    revoke_reason: str | None
    seats_used: int

    @property
    def revoked(self) -> bool:
        return self.status != LicenseStatus.ACTIVE


@dataclass(frozen=True, slots=True)
class Seat:
    id: int
    fingerprint: str
    label: str
    created_at: datetime


class SeatLimitReached(Exception):
    def __init__(self, view: LicenseView) -> None:
        super().__init__("seat limit reached")
        self.view = view


class LicenseRevoked(Exception):
    def __init__(self, view: LicenseView) -> None:
        super().__init__("license revoked")
        self.view = view


def _view(lic: License, seats_used: int) -> LicenseView:
    return LicenseView(
        id=lic.id,
        product_id=lic.product_id,
        tier=lic.tier,
        addons=list(lic.addons),
        seat_limit=lic.seat_limit,
        status=LicenseStatus(lic.status),
        issued_at=lic.created_at,
        revoked_at=lic.revoked_at,
        revoke_reason=lic.revoke_reason,
        seats_used=seats_used,
    )


async def look_up(key: str, fingerprint: str | None) -> tuple[LicenseView, bool] | None:
    """The license for a normalised key with its seat count and whether `fingerprint` holds
    a seat, in one indexed query (the validate hot path): `licenses.key` is unique and the
    `(license_id, fingerprint)` index serves both counts."""
    query = License.filter(key=key).annotate(seats_used=Count("activations"))
    if fingerprint is not None:
        query = query.annotate(
            holds_seat=Count("activations", _filter=Q(activations__fingerprint=fingerprint))
        )
    lic = await query.first()
    if lic is None:
        return None
    used = int(getattr(lic, "seats_used", 0))
    holds = fingerprint is not None and int(getattr(lic, "holds_seat", 0)) > 0
    return _view(lic, used), holds


def _seat(activation: Activation) -> Seat:
    return Seat(
        id=activation.id,
        fingerprint=activation.fingerprint,
        label=activation.label,
        created_at=activation.created_at,
    )


async def activate(key: str, fingerprint: str, label: str) -> tuple[LicenseView, Seat, bool] | None:
    """Take a seat for `fingerprint` (or return the one it holds). Returns
    (license, seat, created) or None for an unknown key; raises `LicenseRevoked` /
    `SeatLimitReached`."""
    try:
        return await _activate_once(key, fingerprint, label)
    except IntegrityError:
        # The same machine activated concurrently and won the unique index: its seat is
        # this machine's seat. (On PostgreSQL the row lock makes this path rare.)
        return await _activate_once(key, fingerprint, label)


async def _activate_once(
    key: str, fingerprint: str, label: str
) -> tuple[LicenseView, Seat, bool] | None:
    async with in_transaction() as conn:
        # The row lock serialises every activation of this license across processes; the
        # count below therefore sees every seat committed before us.
        lic = await License.filter(key=key).select_for_update().using_db(conn).first()
        if lic is None:
            return None
        seats = Activation.filter(license_id=lic.id).using_db(conn)
        used = await seats.count()
        if lic.status != LicenseStatus.ACTIVE:
            raise LicenseRevoked(_view(lic, used))
        existing = await seats.filter(fingerprint=fingerprint).first()
        if existing is not None:
            return _view(lic, used), _seat(existing), False
        if used >= lic.seat_limit:
            raise SeatLimitReached(_view(lic, used))
        activation = await Activation.create(
            using_db=conn, license_id=lic.id, fingerprint=fingerprint, label=label
        )
        return _view(lic, used + 1), _seat(activation), True


async def find_seat(key: str, fingerprint: str) -> tuple[LicenseView, Seat | None] | None:
    """The license and the seat `fingerprint` holds (None if it holds none)."""
    found = await look_up(key, fingerprint)
    if found is None:
        return None
    view, holds = found
    if not holds:
        return view, None
    activation = await Activation.get(license_id=view.id, fingerprint=fingerprint)
    return view, _seat(activation)


async def deactivate(key: str, fingerprint: str) -> bool:
    """Free the seat `fingerprint` holds; False when there is none (or no such license)."""
    lic = await License.filter(key=key).only("id").first()
    if lic is None:
        return False
    deleted = await Activation.filter(license_id=lic.id, fingerprint=fingerprint).delete()
    return deleted > 0
