"""`migrate`: bring the database schema up to date, and make the first signing key."""

from __future__ import annotations

import asyncio

import click

from gateway.cli.common import log, settings_and_logging
from gateway.db import database as db
from gateway.licenses.signing import KeyStore


@click.command()
def migrate() -> None:
    """Apply pending database migrations (idempotent)."""
    settings = settings_and_logging()
    asyncio.run(db.migrate(settings.resolved_database_url))
    # The first license signing key is made here too, so a fresh install is complete.
    KeyStore(settings.license.keys_path(settings.data_dir)).ensure()
    log.info("database is up to date: %s", settings.resolved_database_url.split("@")[-1])
