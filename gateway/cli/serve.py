"""`serve`: the HTTP server, one process or several workers."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import click
import uvicorn

from config.sections import trusted_networks
from config.settings import Settings, env_name
from gateway.cli.common import log, settings_and_logging
from gateway.cli.preflight import ping_providers, production_warnings
from gateway.db import database as db
from gateway.http.origins import port_mismatch
from gateway.ops.logs import uvicorn_log_config

# Not imported from gateway.ops.metrics: importing that module creates the metric files inside
# this directory, which must exist (and be emptied) first.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def _trusted_proxies(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """`--forwarded-allow-ips`, checked as the setting it sets."""
    if value is not None:
        try:
            trusted_networks(value)
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from exc
    return value


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="address to listen on")
@click.option(
    "--port", type=click.IntRange(1, 65535), default=8000, show_default=True, help="TCP port"
)
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="worker processes (use PostgreSQL for more than one)",
)
@click.option(
    "--proxy-headers",
    is_flag=True,
    help="kept for compatibility, changes nothing: X-Forwarded-For/-Proto are always read, "
    "from trusted proxies only (GATEWAY_TRUSTED_PROXIES)",
)
@click.option(
    "--forwarded-allow-ips",
    metavar="IPS",
    callback=_trusted_proxies,
    help="comma-separated proxy addresses/networks whose X-Forwarded-For is believed; sets "
    "GATEWAY_TRUSTED_PROXIES for this server (default 127.0.0.1/8, ::1; '*' is refused)",
)
@click.option(
    "--no-mailer",
    is_flag=True,
    help="do not send the outbox from this server (run `send-mail` separately)",
)
def serve(
    host: str,
    port: int,
    workers: int,
    proxy_headers: bool,
    forwarded_allow_ips: str | None,
    no_mailer: bool,
) -> None:
    """Run the HTTP server (migrates the database first)."""
    # Through the environment: with --workers, each worker loads its own settings.
    if no_mailer:
        os.environ["GATEWAY_MAIL__SENDER_IN_SERVE"] = "false"
    if forwarded_allow_ips is not None:
        os.environ[env_name("trusted_proxies")] = forwarded_allow_ips
    settings = settings_and_logging()
    _log_preflight(settings, host)
    if (mismatch := port_mismatch(settings, port)) is not None:
        log.warning("%s", mismatch)
    options: dict[str, Any] = {
        "host": host,
        "port": port,
        # The gateway reads the forwarding headers itself (gateway/http/proxies.py): uvicorn
        # on its own would also believe FORWARDED_ALLOW_IPS from the environment.
        "proxy_headers": False,
        "log_config": uvicorn_log_config(settings.log_level, settings.log_format),
        "log_level": settings.log_level.lower(),
    }
    if workers == 1:
        if os.environ.get(MULTIPROC_ENV):
            # Set by the operator to share counts with CLI commands: prepare it as for N.
            _fresh_metrics_dir()
        # Imported only now: importing the app creates the metric files, in that directory.
        from gateway.app import create_app

        uvicorn.run(create_app(settings), **options)
        return
    _serve_workers(settings, workers, options)


def _log_preflight(settings: Settings, host: str) -> None:
    for warning in production_warnings(settings, host=host):
        log.warning("%s", warning)
    # A refused API key or an unreachable provider is logged loudly; the server still starts
    # (a provider outage must not keep the other provider's buyers out).
    for check in asyncio.run(ping_providers(settings, seconds=5.0, include_disabled=False)):
        if check.ok:
            log.info("%s: %s", check.name, check.detail)
        else:
            log.error("%s: %s", check.name, check.detail)


def _serve_workers(settings: Settings, workers: int, options: dict[str, Any]) -> None:
    """Several workers: migrate once here (not N times at once), share metrics through files."""
    asyncio.run(db.migrate(settings.resolved_database_url))
    if settings.resolved_database_url.startswith("sqlite"):
        log.warning("--workers %d on SQLite: use PostgreSQL for several workers", workers)
    metrics_dir, created = _fresh_metrics_dir()
    log.info("%d workers; metrics shared through %s", workers, metrics_dir)
    try:
        uvicorn.run("gateway.app:create_app", factory=True, workers=workers, **options)
    finally:
        if created:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def _fresh_metrics_dir() -> tuple[Path, bool]:
    """An empty PROMETHEUS_MULTIPROC_DIR (set before any worker imports prometheus_client);
    True when it was made here (and is removed on exit)."""
    given = os.environ.get(MULTIPROC_ENV)
    if not given:
        path = Path(tempfile.mkdtemp(prefix="gateway-metrics-"))
        os.environ[MULTIPROC_ENV] = str(path)
        return path, True
    path = Path(given)
    path.mkdir(parents=True, exist_ok=True)
    # Files of a previous run would add its counts to this one's.
    for stale in path.glob("*.db"):
        stale.unlink()
    return path, False
