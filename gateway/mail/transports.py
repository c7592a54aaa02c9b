"""Mail transports: how the outbox sender hands over one message.

`SmtpTransport` for production (aiosmtplib); for development `ConsoleTransport` (logs that
a mail went out, never its body) and `FileTransport` (one .eml file per message).
`transport_for` picks one from `settings.mail_backend`.

A send has two phases. `send` returns once the message is accepted (for SMTP: the relay's
250 to DATA); what it returns is the goodbye that ends the session (SMTP QUIT). The outbox
records the send between the two, so a relay that stalls or fails on QUIT has still
received the message once, and is never sent it again.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from email.message import EmailMessage
from functools import partial
from pathlib import Path
from typing import Protocol

import aiosmtplib

from config.settings import Settings, SmtpSettings

log = logging.getLogger(__name__)


Goodbye = Callable[[], Awaitable[None]]


async def no_goodbye() -> None:
    """Backends without a session have nothing to end."""


class Transport(Protocol):
    async def send(self, message: EmailMessage) -> Goodbye:
        """Hand the message over and return once it is accepted; raise on any failure
        before that (it will be retried). The caller awaits the returned goodbye after
        recording the send; a failure there does not make the message unsent."""


class SmtpTransport:
    def __init__(self, smtp: SmtpSettings) -> None:
        self.smtp = smtp

    async def send(self, message: EmailMessage) -> Goodbye:
        smtp = self.smtp
        client = aiosmtplib.SMTP(
            hostname=smtp.host,
            port=smtp.port,
            username=smtp.username,
            password=smtp.password.get_secret_value() if smtp.password else None,
            use_tls=smtp.security == "tls",
            start_tls=smtp.security == "starttls",
            timeout=smtp.timeout_seconds,
        )
        try:
            await client.connect()
            # Returns at the relay's 250 to DATA: from then on the message is the relay's.
            await client.send_message(message)
        except BaseException:
            client.close()  # a timeout cancels us here too: never leave the socket open
            raise
        return partial(_quit, client)


async def _quit(client: aiosmtplib.SMTP) -> None:
    try:
        await client.quit()
    finally:
        client.close()


class ConsoleTransport:
    """Development: logs that a mail was sent. Never logs the body (it holds the key)."""

    async def send(self, message: EmailMessage) -> Goodbye:
        log.info("mail sent (console backend) to %s: %s", message["To"], message["Subject"])
        return no_goodbye


class FileTransport:
    """Development: writes each message as an .eml file into one directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    async def send(self, message: EmailMessage) -> Goodbye:
        await asyncio.to_thread(self._write, message)
        return no_goodbye

    def _write(self, message: EmailMessage) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        name = message["Message-ID"].strip("<>").replace("@", "_").replace("/", "_")
        target = self.directory / f"{name}.eml"
        partial = target.with_suffix(".eml.part")
        partial.write_bytes(message.as_bytes())
        # Atomic: a reader of the directory never sees half a message.
        os.replace(partial, target)
        log.info("mail written to %s (file backend), to %s", target, message["To"])


def transport_for(settings: Settings) -> Transport:
    if settings.mail_backend == "smtp":
        return SmtpTransport(settings.smtp)
    if settings.mail_backend == "file":
        return FileTransport(settings.resolved_mail_dir)
    return ConsoleTransport()
