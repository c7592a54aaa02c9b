"""Mail transports: how the outbox sender hands over one message.

`SmtpTransport` for production (aiosmtplib); for development `ConsoleTransport` (logs that
a mail went out, never its body) and `FileTransport` (one .eml file per message).
`transport_for` picks one from `settings.mail_backend`.
"""

from __future__ import annotations

import asyncio
import logging
import os
from email.message import EmailMessage
from pathlib import Path
from typing import Protocol

import aiosmtplib

from config.settings import Settings, SmtpSettings

log = logging.getLogger(__name__)


class Transport(Protocol):
    async def send(self, message: EmailMessage) -> None:
        """Hand the message over; raise on any failure (it will be retried)."""


class SmtpTransport:
    def __init__(self, smtp: SmtpSettings) -> None:
        self.smtp = smtp

    async def send(self, message: EmailMessage) -> None:
        smtp = self.smtp
        await aiosmtplib.send(
            message,
            hostname=smtp.host,
            port=smtp.port,
            username=smtp.username,
            password=smtp.password.get_secret_value() if smtp.password else None,
            use_tls=smtp.security == "tls",
            start_tls=smtp.security == "starttls",
            timeout=smtp.timeout_seconds,
        )


class ConsoleTransport:
    """Development: logs that a mail was sent. Never logs the body (it holds the key)."""

    async def send(self, message: EmailMessage) -> None:
        log.info("mail sent (console backend) to %s: %s", message["To"], message["Subject"])


class FileTransport:
    """Development: writes each message as an .eml file into one directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    async def send(self, message: EmailMessage) -> None:
        await asyncio.to_thread(self._write, message)

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
