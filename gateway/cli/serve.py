"""`serve` and `migrate`."""

from __future__ import annotations

import asyncio

import click

from gateway.cli import cli
from gateway.cli.common import log, settings_and_logging


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="address to listen on")
@click.option(
    "--port", type=click.IntRange(1, 65535), default=8000, show_default=True, help="TCP port"
)
def serve(host: str, port: int) -> None:
    """Run the HTTP server (migrates the database first)."""
    import uvicorn

    from gateway.app import create_app

    settings = settings_and_logging()
    app = create_app(settings)
    uvicorn.run(app, host=host, port=port, log_level=settings.log_level.lower())


@cli.command()
def migrate() -> None:
    """Apply pending database migrations (idempotent)."""
    from gateway import db
    from gateway.signing import KeyStore

    settings = settings_and_logging()
    asyncio.run(db.migrate(settings.resolved_database_url))
    # The first license signing key is made here too, so a fresh install is complete.
    KeyStore(settings.license.keys_path(settings.data_dir)).ensure()
    log.info("database is up to date: %s", settings.resolved_database_url.split("@")[-1])
