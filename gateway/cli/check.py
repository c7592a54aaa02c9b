"""`check-config`: settings, catalog, database, license signing keys and every enabled provider,
before going live."""

from __future__ import annotations

import asyncio
import json

import click

from config.settings import SettingsError, load_settings
from gateway.cli.common import json_option
from gateway.cli.preflight import Check, check_installation, production_warnings
from gateway.ops.logs import setup_logging


@click.command("check-config")
@click.option("--timeout", type=click.FloatRange(0.1, 60), default=10.0, show_default=True)
@json_option
def check_config(timeout: float, as_json: bool) -> None:
    """Load settings and catalog, ping the database and each enabled provider.

    Prints every check; exits 1 if anything is wrong (warnings alone do not fail).
    """
    checks, warnings = _checks(timeout)
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


def _checks(timeout: float) -> tuple[list[Check], list[str]]:
    """Every check in order, and the production warnings (none without settings)."""
    try:
        settings = load_settings()
    except SettingsError as exc:
        return [Check("settings", False, str(exc))], []
    setup_logging("WARNING", settings.log_format)
    loaded = Check("settings", True, f"loaded (config file {settings.config_file})")
    found = asyncio.run(check_installation(settings, seconds=timeout))
    return [loaded, *found], production_warnings(settings)
