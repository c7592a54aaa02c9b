"""What an operator does to licenses: find one by id, key or order id, list them, revoke,
reinstate, and queue the license email again.

Every change is idempotent (it reports whether anything changed) and logged with the key
masked.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from gateway.db.models import Activation, License, LicenseStatus, OutboxEmail
from gateway.licenses.issuing import LICENSE_EMAIL
from gateway.licenses.keys import mask_key, normalize_key
from gateway.mail.queue import is_queued, queue_again
from gateway.ops import metrics

log = logging.getLogger(__name__)


class ResendRefused(Exception):
    """The license email cannot be queued again; the message says why."""


async def find_license(ref: str) -> License | None:
    """The license named by its id, its key (as typed) or its order id, with its order."""
    if ref.isdigit():
        return await License.get_or_none(id=int(ref)).prefetch_related("order")
    if ref.startswith("ord_"):
        return await License.get_or_none(order_id=ref).prefetch_related("order")
    return await License.get_or_none(key=normalize_key(ref)).prefetch_related("order")


async def list_licenses(
    *, status: str | None, email: str | None, product: str | None, limit: int
) -> list[License]:
    """Licenses, newest first; `email` matches case-insensitively."""
    query = License.all()
    if status:
        query = query.filter(status=status)
    if email:
        query = query.filter(buyer_email__iexact=email)
    if product:
        query = query.filter(product_id=product)
    return await query.order_by("-created_at", "-id").limit(limit)


async def activation_count(lic: License) -> int:
    return await Activation.filter(license_id=lic.id).count()


async def revoke(lic: License, reason: str) -> bool:
    """Revoke `lic` (its key stops validating); False when it already was."""
    changed = await License.filter(id=lic.id, status=LicenseStatus.ACTIVE).update(
        status=LicenseStatus.REVOKED, revoked_at=datetime.now(UTC), revoke_reason=reason
    )
    if not changed:
        return False
    metrics.LICENSES_REVOKED.labels("operator").inc()
    log.info(
        "license %s (%s) revoked by operator: %s",
        lic.id,
        mask_key(lic.key),
        reason,
        extra={"order_id": lic.order_id},  # type: ignore[attr-defined]
    )
    return True


async def reinstate(lic: License) -> bool:
    """Make a revoked `lic` active again; False when it already was."""
    changed = await License.filter(id=lic.id, status=LicenseStatus.REVOKED).update(
        status=LicenseStatus.ACTIVE, revoked_at=None, revoke_reason=None
    )
    if not changed:
        return False
    log.info(
        "license %s (%s) reinstated by operator",
        lic.id,
        mask_key(lic.key),
        extra={"order_id": lic.order_id},  # type: ignore[attr-defined]
    )
    return True


async def resend_email(lic: License) -> tuple[OutboxEmail, bool]:
    """Queue the license email of `lic` again (sent by the outbox sender); the email, and
    False when it was queued already. Raises `ResendRefused` when there is none to send."""
    if lic.status is not LicenseStatus.ACTIVE:
        raise ResendRefused(f"license {lic.id} is revoked; reinstate it first")
    email = await OutboxEmail.get_or_none(order_id=lic.order_id, kind=LICENSE_EMAIL)  # type: ignore[attr-defined]
    if email is None:
        raise ResendRefused(f"license {lic.id} has no license email on file")
    if is_queued(email):
        return email, False
    await queue_again(OutboxEmail.filter(id=email.id))
    log.info(
        "license email %s (%s) queued again to %s",
        email.id,
        mask_key(lic.key),
        email.to_address,
        extra={"order_id": lic.order_id},  # type: ignore[attr-defined]
    )
    return email, True
