"""`licenses list|show|revoke|reinstate|resend|comp`.

A license is named by its id, its key, or its order id. Every change is idempotent (a second
revoke says "already revoked" and exits 0) and logged with the key masked; `show` prints the
whole key, because the operator asked for it.
"""

from __future__ import annotations

from typing import Any

import click

from config.catalog import load_catalog
from gateway.cli.common import (
    emit_object,
    emit_table,
    iso,
    json_option,
    settings_and_logging,
    with_db,
)
from gateway.db.models import License
from gateway.licenses import admin
from gateway.licenses.comp import issue_comp
from gateway.licenses.keys import mask_key
from gateway.mail.addresses import InvalidEmail, normalize_email


@click.group()
def licenses() -> None:
    """Licenses: list, show, revoke, reinstate, resend the email, give one away (comp)."""


async def _find(ref: str) -> License:
    lic = await admin.find_license(ref)
    if lic is None:
        raise click.ClickException(f"no license {ref}")
    return lic


def _doc(lic: License, *, full_key: bool) -> dict[str, Any]:
    return {
        "id": lic.id,
        "key": lic.key if full_key else mask_key(lic.key),
        "order_id": lic.order_id,  # type: ignore[attr-defined]
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


def _named(lic: License) -> str:
    return f"license {lic.id} ({mask_key(lic.key)})"


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
    settings = settings_and_logging()

    async def work() -> list[dict[str, Any]]:
        found = await admin.list_licenses(status=status, email=email, product=product, limit=limit)
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

    async def work() -> dict[str, Any]:
        lic = await _find(ref)
        doc = _doc(lic, full_key=True)
        doc["activations"] = await admin.activation_count(lic)
        doc["status_url"] = lic.order.status_url(settings.public_url)
        return doc

    emit_object(with_db(settings, work), as_json=as_json)


@licenses.command("revoke")
@click.argument("ref")
@click.option("--reason", required=True, help="why (kept on the license)")
def licenses_revoke(ref: str, reason: str) -> None:
    """Revoke a license (the key stops validating). Idempotent."""
    settings = settings_and_logging()

    async def work() -> str:
        lic = await _find(ref)
        if await admin.revoke(lic, reason):
            return f"{_named(lic)} revoked"
        return f"{_named(lic)} was already revoked"

    click.echo(with_db(settings, work))


@licenses.command("reinstate")
@click.argument("ref")
def licenses_reinstate(ref: str) -> None:
    """Make a revoked license active again. Idempotent."""
    settings = settings_and_logging()

    async def work() -> str:
        lic = await _find(ref)
        if await admin.reinstate(lic):
            return f"{_named(lic)} reinstated"
        return f"{_named(lic)} is already active"

    click.echo(with_db(settings, work))


@licenses.command("resend")
@click.argument("ref")
def licenses_resend(ref: str) -> None:
    """Queue the license email again (sent by `serve` or `send-mail`). Idempotent while queued."""
    settings = settings_and_logging()

    async def work() -> str:
        try:
            email, queued = await admin.resend_email(await _find(ref))
        except admin.ResendRefused as exc:
            raise click.ClickException(str(exc)) from exc
        verb = "queued" if queued else "is already queued"
        return f"license email {email.id} to {email.to_address} {verb}"

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
    settings = settings_and_logging()
    item = load_catalog(settings.products_file).get(product)
    if item is None:
        raise click.BadParameter(f"no product {product!r} in the catalog", param_hint="--product")
    try:
        address = normalize_email(email)
    except InvalidEmail as exc:
        raise click.BadParameter(str(exc), param_hint="--email") from exc

    async def work() -> dict[str, Any]:
        comp = await issue_comp(
            item,
            address,
            by=by,
            reason=reason,
            public_url=settings.public_url,
            help_url=settings.license.activation_help_url,
        )
        doc = _doc(comp.license, full_key=True)
        doc["created"] = comp.created
        doc["status_url"] = comp.order.status_url(settings.public_url)
        return doc

    doc = with_db(settings, work)
    if as_json:
        emit_object(doc, as_json=True)
        return
    verb = "issued" if doc["created"] else "already issued (nothing new)"
    click.echo(f"comp license {doc['key']} {verb} for {address}, order {doc['order_id']}")
    click.echo(f"status page: {doc['status_url']}")
    if doc["created"]:
        click.echo("the license email is queued (sent by `serve` or `send-mail`)")
