"""`check-config`: settings, catalog, database, license signing keys and every enabled provider,
before going live."""

from __future__ import annotations

import asyncio
import json

import click

from config.settings import Settings
from gateway.cli import cli
from gateway.cli.common import json_option
from gateway.cli.preflight import Check, ping_providers, production_warnings


@cli.command("check-config")
@click.option("--timeout", type=click.FloatRange(0.1, 60), default=10.0, show_default=True)
@json_option
def check_config(timeout: float, as_json: bool) -> None:
    """Load settings and catalog, ping the database and each enabled provider.

    Prints every check; exits 1 if anything is wrong (warnings alone do not fail).
    """
    from config.catalog import CatalogError, load_catalog
    from config.settings import SettingsError, load_settings
    from gateway.ops.logs import setup_logging

    checks: list[Check] = []
    warnings: list[str] = []
    try:
        settings = load_settings()
    except SettingsError as exc:
        checks.append(Check("settings", False, str(exc)))
    else:
        setup_logging("WARNING", settings.log_format)
        checks.append(Check("settings", True, f"loaded (config file {settings.config_file})"))
        try:
            catalog = load_catalog(settings.products_file)
            checks.append(Check("catalog", True, f"{len(catalog.products)} product(s)"))
        except CatalogError as exc:
            checks.append(Check("catalog", False, str(exc)))
        checks.append(asyncio.run(_ping_db(settings, timeout)))
        checks.append(_signing_keys(settings))
        checks += asyncio.run(ping_providers(settings, seconds=timeout))
        warnings = production_warnings(settings)
    ok = all(check.ok for check in checks)
    if as_json:
        doc = {"ok": ok, "checks": [c.as_dict() for c in checks], "warnings": warnings}
        click.echo(json.dumps(doc, indent=2))
    else:
        for check in checks:
            click.echo(f"{'ok  ' if check.ok else 'FAIL'}  {check.name}: {check.detail}")
        for warning in warnings:
            click.echo(f"warn  {warning}")
        click.echo("configuration OK" if ok else "configuration has problems (see FAIL above)")
    if not ok:
        raise click.exceptions.Exit(1)


def _signing_keys(settings: Settings) -> Check:
    """The license signing keys as `serve` will load them: an unsafe key file stops startup."""
    from gateway.licenses.signing import KeyFileError, KeyStore

    directory = settings.license.keys_path(settings.data_dir)
    try:
        keys = KeyStore(directory).load()
    except (KeyFileError, OSError) as exc:
        return Check("license keys", False, str(exc))
    if not keys:
        return Check("license keys", True, f"none yet in {directory}: the first start makes one")
    return Check("license keys", True, f"{len(keys)} in {directory}, signing: {keys[-1].kid}")


async def _ping_db(settings: Settings, seconds: float) -> Check:
    from tortoise import connections

    from gateway.db import database as db

    where = settings.resolved_database_url.split("@")[-1]
    try:
        await asyncio.wait_for(db.open_db(settings, run_migrations=False), seconds)
        try:
            await asyncio.wait_for(connections.get("default").execute_query("SELECT 1"), seconds)
        finally:
            await db.close_db()
    except Exception as exc:  # any failure to reach the database is the finding
        return Check("database", False, f"{where}: {type(exc).__name__}: {exc}")
    return Check("database", True, f"{where} reachable")
