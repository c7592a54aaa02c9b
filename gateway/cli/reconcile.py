"""`reconcile`: one reconciler pass (ask providers about stuck orders), e.g. from cron."""

from __future__ import annotations

from typing import Any

import click

from config.catalog import load_catalog
from gateway.cli.common import emit_object, json_option, settings_and_logging, with_db
from gateway.payments.apply import Applier
from gateway.payments.reconciler import Reconciler
from providers.registry import build_providers


@click.command()
@json_option
def reconcile(as_json: bool) -> None:
    """Ask each provider once about orders its webhooks left unfinished.

    Safe next to running `serve` processes: each order is claimed by one process at a time.
    Exits 1 when a provider was unreachable (those orders are retried later).
    """
    settings = settings_and_logging()
    catalog = load_catalog(settings.products_file)

    async def work() -> dict[str, Any]:
        providers = build_providers(settings)
        try:
            applier = Applier(
                catalog,
                public_url=settings.public_url,
                help_url=settings.license.activation_help_url,
            )
            report = await Reconciler(settings, providers, applier).run_once()
        finally:
            for provider in providers.values():
                await provider.aclose()
        return {
            "polled": report.polled,
            "changed": report.changed,
            "expired": report.expired,
            "provider_unavailable": sorted(set(report.unavailable)),
            "errors": report.errors,
        }

    doc = with_db(settings, work)
    emit_object(doc, as_json=as_json)
    if doc["provider_unavailable"]:
        raise click.exceptions.Exit(1)
