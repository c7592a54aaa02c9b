"""`keys generate | rotate | prune | list`: the Ed25519 keys that sign offline license tokens.

A running gateway reads its keys once at startup: restart every gateway process after
`rotate` so the new key signs (and is published) everywhere.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import click

from gateway.cli.common import emit_table, json_option, settings_and_logging
from gateway.licenses.signing import RESTART_GRACE, KeyStore


def _store() -> tuple[KeyStore, timedelta]:
    settings = settings_and_logging()
    ttl = timedelta(days=settings.license.token_ttl_days)
    return KeyStore(settings.license.keys_path(settings.data_dir)), ttl


@click.group()
def keys() -> None:
    """Signing keys for offline license tokens (published at /.well-known/jwks.json)."""


@keys.command()
def generate() -> None:
    """Create the first signing key if there is none (the gateway also does this on start)."""
    store, _ = _store()
    with store.locked():
        existing = store.load()
        if existing:
            click.echo(f"a signing key exists already: {existing[-1].kid} (nothing to do)")
            return
        key = store.generate()
    click.echo(f"generated signing key {key.kid} in {key.path}")


@keys.command()
def rotate() -> None:
    """Add a new signing key; it signs from the next gateway start. Older keys stay published
    until every token they signed has expired (then `keys prune`)."""
    store, _ = _store()
    key = store.rotate()
    click.echo(f"new signing key {key.kid} in {key.path}")
    click.echo("restart every gateway process so it signs with the new key")


@keys.command()
def prune() -> None:
    """Delete retired keys whose every token has expired."""
    store, ttl = _store()
    dropped = store.prune(ttl)
    for key in dropped:
        click.echo(f"pruned {key.kid}")
    if not dropped:
        click.echo("nothing to prune")


@keys.command(name="list")
@json_option
def list_keys(as_json: bool) -> None:
    """Every key: which one signs, and until when retired ones stay published."""
    store, ttl = _store()
    found = store.load()
    now = datetime.now(UTC)
    rows: list[dict[str, Any]] = []
    for index, key in enumerate(found):
        successor = found[index + 1] if index + 1 < len(found) else None
        until = None if successor is None else successor.created_at + ttl + RESTART_GRACE
        rows.append(
            {
                "kid": key.kid,
                "created_at": key.created_at.isoformat(),
                "role": "signing"
                if successor is None
                else ("prunable" if until is not None and now >= until else "retired"),
                "published_until": None if until is None else until.isoformat(),
                "file": str(key.path),
            }
        )
    emit_table(
        rows,
        ["kid", "role", "created_at", "published_until"],
        as_json=as_json,
        empty="no signing keys yet: run `checkout-gateway keys generate`",
    )
