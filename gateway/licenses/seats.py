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

from tortoise import connections
from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from gateway.db.models import Activation, License, LicenseStatus


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


# The validate hot path, hand-written: the ORM spends more time building this query
# (LEFT JOIN + GROUP BY over every column) than the database spends answering it.
_COLUMNS = (
    "id",
    "product_id",
    "tier",
    "addons",
    "seat_limit",
    "status",
    "created_at",
    "revoked_at",
    "revoke_reason",
)
# Column order = _COLUMNS, then the seat count, then "this fingerprint holds a seat".
_LOOK_UP = (
    "SELECT l.id, l.product_id, l.tier, l.addons, l.seat_limit, l.status, l.created_at,"
    " l.revoked_at, l.revoke_reason,"
    " (SELECT COUNT(*) FROM license_activations a WHERE a.license_id = l.id),"
    " (SELECT COUNT(*) FROM license_activations a"
    "  WHERE a.license_id = l.id AND a.fingerprint = {fpr})"
    " FROM licenses l WHERE l.key = {key}"
)
_SQL = {
    "sqlite": _LOOK_UP.format(fpr="?", key="?"),
    "postgres": _LOOK_UP.format(fpr="$1", key="$2"),
}


async def look_up(key: str, fingerprint: str | None) -> tuple[LicenseView, bool] | None:
    """The license for a normalised key with its seat count and whether `fingerprint` holds
    a seat, in one indexed query (the validate hot path): `licenses.key` is unique and the
    `(license_id, fingerprint)` index serves both counts."""
    conn = connections.get("default")
    sql = _SQL[conn.capabilities.dialect]
    _, rows = await conn.execute_query(sql, [fingerprint or "", key])
    if not rows:
        return None
    row = rows[0]
    fields = License._meta.fields_map
    values = {name: fields[name].to_python_value(row[i]) for i, name in enumerate(_COLUMNS)}
    used, holds = int(row[len(_COLUMNS)]), int(row[len(_COLUMNS) + 1])
    view = LicenseView(
        id=values["id"],
        product_id=values["product_id"],
        tier=values["tier"],
        addons=list(values["addons"]),
        seat_limit=values["seat_limit"],
        status=LicenseStatus(values["status"]),
        issued_at=values["created_at"],
        revoked_at=values["revoked_at"],
        revoke_reason=values["revoke_reason"],
        seats_used=used,
    )
    return view, fingerprint is not None and holds > 0


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
