"""`send-mail`: deliver queued emails (the outbox) outside `serve`."""

from __future__ import annotations

import asyncio
import signal

import click

from gateway.cli.common import log, settings_and_logging, with_db
from gateway.mail.outbox import Mailer


@click.command("send-mail")
@click.option("--once", is_flag=True, help="one round, then exit (e.g. from cron)")
def send_mail(once: bool) -> None:
    """Deliver queued license emails (the outbox)."""
    settings = settings_and_logging()

    async def work() -> None:
        mailer = Mailer(settings)
        if once:
            result = await mailer.run_once()
            log.info("outbox: %d sent, %d failed, %d dead", result.sent, result.failed, result.dead)
            return
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        log.info("outbox sender running (%s backend); Ctrl-C stops", settings.mail_backend)
        await mailer.run_forever(stop)

    with_db(settings, work)
