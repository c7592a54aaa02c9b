"""`licenses list|show|revoke|reinstate|resend|comp`.

A license is named by its id, its key, or its order id. Every change is idempotent (a second
revoke says "already revoked" and exits 0) and logged with the key masked; `show` prints the
whole key, because the operator asked for it.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime
from typing import Any

import click

from gateway.cli import cli
from gateway.cli.common import (
    emit_object,
    emit_table,
    iso,
    json_option,
    log,
    settings_and_logging,
    with_db,
)

COMP_PROVIDER = "comp"


@cli.group()
def licenses() -> None:
    """Licenses: list, show, revoke, reinstate, resend the email, give one away (comp)."""


async def _find(ref: str) -> Any:
    from gateway.db.models import License
    from gateway.licenses.issuing import normalize_key

    if ref.isdigit():
        return await License.get_or_none(id=int(ref)).prefetch_related("order")
    if ref.startswith("ord_"):
        return await License.get_or_none(order_id=ref).prefetch_related("order")
    return await License.get_or_none(key=normalize_key(ref)).prefetch_related("order")


def _doc(lic: Any, *, full_key: bool) -> dict[str, Any]:
    from gateway.licenses.issuing import mask_key

    return {
        "id": lic.id,
        "key": lic.key if full_key else mask_key(lic.key),
        "order_id": lic.order_id,
        "product": lic.product_id,
        "tier": lic.tier,
        "addons": list(lic.addons),
        "seat_limit": lic.seat_limit,
        "email": lic.buyer_email,
        "status": lic.status.value,
        "created_at": iso(lic.created_at),
        "revoked_at": iso(lic.revoked_at),
        "revoke_reason": lic.revoke_reason,
    }


@licenses.command("list")
@click.option("--status", type=click.Choice(["active", "revoked"]))
@click.option("--email", help="only this buyer email (case-insensitive)")
@click.option("--product", help="only this product id")
@click.option("--limit", type=click.IntRange(1, 10000), default=200, show_default=True)
@json_option
def licenses_list(
    status: str | None, email: str | None, product: str | None, limit: int, as_json: bool
) -> None:
    """List licenses, newest first (keys masked; `licenses show` prints one in full)."""
    from gateway.db.models import License

    settings = settings_and_logging()

    async def work() -> list[dict[str, Any]]:
        query = License.all()
        if status:
            query = query.filter(status=status)
        if email:
            query = query.filter(buyer_email__iexact=email)
        if product:
            query = query.filter(product_id=product)
        found = await query.order_by("-created_at", "-id").limit(limit)
        return [_doc(lic, full_key=False) for lic in found]

    rows = with_db(settings, work)
    emit_table(
        rows,
        ["id", "key", "order_id", "product", "email", "status", "created_at"],
        as_json=as_json,
        title="licenses",
        empty="no licenses match",
    )


@licenses.command("show")
@click.argument("ref")
@json_option
def licenses_show(ref: str, as_json: bool) -> None:
    """One license by id, key or order id, with its key in full and its activations."""
    settings = settings_and_logging()

    async def work() -> dict[str, Any] | None:
        lic = await _find(ref)
        if lic is None:
            return None
        doc = _doc(lic, full_key=True)
        doc["activations"] = await lic.activations.all().count()
        doc["status_url"] = lic.order.status_url(settings.public_url)
        return doc

    doc = with_db(settings, work)
    if doc is None:
        raise click.ClickException(f"no license {ref}")
    emit_object(doc, as_json=as_json)


@licenses.command("revoke")
@click.argument("ref")
@click.option("--reason", required=True, help="why (kept on the license)")
def licenses_revoke(ref: str, reason: str) -> None:
    """Revoke a license (the key stops validating). Idempotent."""
    from gateway.db.models import License, LicenseStatus
    from gateway.licenses.issuing import mask_key
    from gateway.ops import metrics

    settings = settings_and_logging()

    async def work() -> str:
        lic = await _find(ref)
        if lic is None:
            raise click.ClickException(f"no license {ref}")
        changed = await License.filter(id=lic.id, status=LicenseStatus.ACTIVE).update(
            status=LicenseStatus.REVOKED, revoked_at=datetime.now(UTC), revoke_reason=reason
        )
        if not changed:
            return f"license {lic.id} ({mask_key(lic.key)}) was already revoked"
        metrics.LICENSES_REVOKED.labels("operator").inc()
        log.info(
            "license %s (%s) revoked by operator: %s",
            lic.id,
            mask_key(lic.key),
            reason,
            extra={"order_id": lic.order_id},
        )
        return f"license {lic.id} ({mask_key(lic.key)}) revoked"

    click.echo(with_db(settings, work))


@licenses.command("reinstate")
@click.argument("ref")
def licenses_reinstate(ref: str) -> None:
    """Make a revoked license active again. Idempotent."""
    from gateway.db.models import License, LicenseStatus
    from gateway.licenses.issuing import mask_key

    settings = settings_and_logging()

    async def work() -> str:
        lic = await _find(ref)
        if lic is None:
            raise click.ClickException(f"no license {ref}")
        changed = await License.filter(id=lic.id, status=LicenseStatus.REVOKED).update(
            status=LicenseStatus.ACTIVE, revoked_at=None, revoke_reason=None
        )
        if not changed:
            return f"license {lic.id} ({mask_key(lic.key)}) is already active"
        log.info(
            "license %s (%s) reinstated by operator",
            lic.id,
            mask_key(lic.key),
            extra={"order_id": lic.order_id},
        )
        return f"license {lic.id} ({mask_key(lic.key)}) reinstated"

    click.echo(with_db(settings, work))


@licenses.command("resend")
@click.argument("ref")
def licenses_resend(ref: str) -> None:
    """Queue the license email again (sent by `serve` or `send-mail`). Idempotent while queued."""
    from gateway.db.models import EmailStatus, LicenseStatus, OutboxEmail
    from gateway.licenses.issuing import LICENSE_EMAIL, mask_key

    settings = settings_and_logging()

    async def work() -> str:
        lic = await _find(ref)
        if lic is None:
            raise click.ClickException(f"no license {ref}")
        if lic.status is not LicenseStatus.ACTIVE:
            raise click.ClickException(f"license {lic.id} is revoked; reinstate it first")
        email = await OutboxEmail.get_or_none(order_id=lic.order_id, kind=LICENSE_EMAIL)
        if email is None:
            raise click.ClickException(f"license {lic.id} has no license email on file")
        if email.status is EmailStatus.PENDING and email.attempts == 0:
            return f"license email {email.id} to {email.to_address} is already queued"
        await OutboxEmail.filter(id=email.id).update(
            status=EmailStatus.PENDING,
            attempts=0,
            next_attempt_at=datetime.now(UTC),
            last_error=None,
        )
        log.info(
            "license email %s (%s) queued again to %s",
            email.id,
            mask_key(lic.key),
            email.to_address,
            extra={"order_id": lic.order_id},
        )
        return f"license email {email.id} to {email.to_address} queued"

    click.echo(with_db(settings, work))


@licenses.command("comp")
@click.option("--product", required=True, help="product id from the catalog")
@click.option("--email", required=True, help="who gets the license")
@click.option("--by", "by", required=True, help="who gives it (recorded on the order)")
@click.option("--reason", required=True, help="why (recorded on the order)")
@json_option
def licenses_comp(product: str, email: str, by: str, reason: str, as_json: bool) -> None:
    """Give a license away without payment, recorded as a `comp` order.

    Issued like a paid one: the key is emailed and shows on its order status page. Running
    the same command again (same product, email and reason) issues nothing new.
    """
    from tortoise.exceptions import IntegrityError
    from tortoise.transactions import in_transaction

    from config.catalog import load_catalog
    from gateway.db.models import License, Order, OrderStatus
    from gateway.licenses.issuing import generate_key, issue_license, mask_key
    from gateway.mail.addresses import InvalidEmail, normalize_email
    from gateway.ops import metrics

    settings = settings_and_logging()
    item = load_catalog(settings.products_file).get(product)
    if item is None:
        raise click.BadParameter(f"no product {product!r} in the catalog", param_hint="--product")
    try:
        address = normalize_email(email)
    except InvalidEmail as exc:
        raise click.BadParameter(str(exc), param_hint="--email") from exc
    fingerprint = hashlib.sha256(f"{item.id}\0{address.lower()}\0{reason}".encode()).hexdigest()
    idempotency_key = f"comp:{fingerprint[:40]}"

    async def work() -> tuple[Any, bool]:
        existing = await License.get_or_none(order__idempotency_key=idempotency_key)
        if existing is not None:
            return existing, False
        try:
            async with in_transaction() as conn:
                order = await Order.create(
                    using_db=conn,
                    id="ord_" + secrets.token_hex(10),
                    product_id=item.id,
                    amount_minor=0,
                    currency=item.currency,
                    provider=COMP_PROVIDER,
                    buyer_email=address,
                    status=OrderStatus.SETTLED,
                    status_token=secrets.token_urlsafe(24),
                    idempotency_key=idempotency_key,
                    notes=f"comp by {by}: {reason}",
                    settled_at=datetime.now(UTC),
                )
                lic = await issue_license(
                    conn,
                    order,
                    item,
                    new_key=generate_key,
                    status_url=order.status_url(settings.public_url),
                    help_url=settings.license.activation_help_url,
                )
        except IntegrityError:
            # The same comp issued concurrently by another run: report that one.
            return await License.get(order__idempotency_key=idempotency_key), False
        return lic, True

    async def run() -> dict[str, Any]:
        lic, created = await work()
        order = await Order.get(id=lic.order_id)
        if created:
            metrics.LICENSES_ISSUED.labels("comp").inc()
            log.info(
                "comp license %s issued to %s by %s: %s",
                mask_key(lic.key),
                address,
                by,
                reason,
                extra={"order_id": order.id, "provider": COMP_PROVIDER},
            )
        doc = _doc(lic, full_key=True)
        doc["created"] = created
        doc["status_url"] = order.status_url(settings.public_url)
        return doc

    doc = with_db(settings, run)
    if as_json:
        emit_object(doc, as_json=True)
        return
    verb = "issued" if doc["created"] else "already issued (nothing new)"
    click.echo(f"comp license {doc['key']} {verb} for {address}, order {doc['order_id']}")
    click.echo(f"status page: {doc['status_url']}")
    if doc["created"]:
        click.echo("the license email is queued (sent by `serve` or `send-mail`)")
